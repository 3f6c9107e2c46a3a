"""coupons."""
