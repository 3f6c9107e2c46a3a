"""Money typed with the currency's exponent (JPY 0, EUR 2, KWD 3): exact, never rounded."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from console import db
from console.currency import AmountError, format_major, parse_amount
from console.orders.models import Order, OrderStatus
from console.payments.models import Payment, PaymentStatus
from console.templating import money
from devtools.stripe_double import create_succeeded_payment_intent
from tests.actions.helpers import confirm_form, submit
from tests.factories import make_order

EXACT = [
    ("1200", "JPY", 1200),
    ("1200", "jpy", 1200),
    ("12.50", "EUR", 1250),
    ("12.5", "EUR", 1250),
    ("0.01", "USD", 1),
    ("1.234", "KWD", 1234),
    ("1.2", "BHD", 1200),
    ("5", "TND", 5000),
    ("42", "CLP", 42),
]
REFUSED = [
    ("12.5", "JPY", "no decimals"),
    ("12.505", "EUR", "2 decimals"),
    ("1.2345", "KWD", "3 decimals"),
    ("NaN", "EUR", "not an amount"),
    ("Infinity", "EUR", "not an amount"),
    ("inf", "EUR", "not an amount"),
    ("1e3", "EUR", "not an amount"),
    ("-5", "EUR", "positive"),
    ("12,50", "EUR", "point for decimals"),
    ("", "EUR", "Enter an amount"),
    ("99999999999", "EUR", "larger than"),
]


@pytest.mark.parametrize(("text", "currency", "minor"), EXACT)
def test_amounts_parse_exactly_with_the_currency_exponent(text, currency, minor):
    """Figure: 9 of 9 amounts in 0-, 2- and 3-decimal currencies give the exact minor units."""
    assert parse_amount(text, currency) == minor


@pytest.mark.parametrize(("text", "currency", "why"), REFUSED)
def test_impossible_amounts_are_refused_not_rounded(text, currency, why):
    """Figure: 11 of 11 over-precise, non-finite, negative or malformed amounts refused."""
    with pytest.raises(AmountError, match=why):
        parse_amount(text, currency)


def test_money_filter_uses_the_exponent():
    """Figure: the template filter reads 1200 JPY, 42.00 EUR and 1.234 KWD correctly."""
    assert money(1200, "JPY") == "1,200 JPY"
    assert money(4200, "eur") == "42.00 EUR"
    assert money(1234, "KWD") == "1.234 KWD"
    assert money(-50, "USD") == "-0.50 USD"
    assert format_major(1234, "KWD") == "1.234" and format_major(1200, "JPY") == "1200"


def captured_order(app, stripe_client, amount: int, currency: str) -> Order:
    pi = create_succeeded_payment_intent(stripe_client, amount=amount, currency=currency.lower())
    with app.app_context():
        s = db.session()
        order = make_order(
            s,
            status=OrderStatus.CONFIRMED,
            amount=amount,
            currency=currency,
            payment_intent_id=pi.id,
        )
        s.add(
            Payment(
                payment_intent_id=pi.id,
                order_id=order.id,
                amount=amount,
                currency=currency,
                status=PaymentStatus.SUCCEEDED,
                verified_amount=amount,
                verified_currency=currency,
            )
        )
        s.commit()
        return order


def refunded(app, external_id: str) -> int:
    with app.app_context():
        return db.session().scalar(
            select(Order.amount_refunded).where(Order.external_id == external_id)
        )


def test_refund_in_yen_refunds_the_typed_amount(app, auth, client, stripe, stripe_client):
    """Figure: 1200 typed for a JPY order refunds 1200 JPY at Stripe (not 120000)."""
    order = captured_order(app, stripe_client, 5000, "JPY")
    auth.as_role("admin")
    page = client.get(f"/actions/orders:order:refund/{order.external_id}").get_data(as_text=True)
    assert 'value="5000"' in page and "no decimals" in page
    resp = submit(client, "orders:order:refund", order.external_id, amount="1200")
    assert resp.status_code == 303, resp.get_data(as_text=True)[:500]
    assert refunded(app, order.external_id) == 1200
    refunds = stripe_client.v1.refunds.list({"payment_intent": order.payment_intent_id}).data
    assert [r.amount for r in refunds] == [1200]


def test_refund_in_dinar_takes_three_decimals(app, auth, client, stripe, stripe_client):
    """Figure: 1.234 typed for a KWD order refunds 1234 minor units."""
    order = captured_order(app, stripe_client, 5000, "KWD")
    auth.as_role("admin")
    resp = submit(client, "orders:order:refund", order.external_id, amount="1.234")
    assert resp.status_code == 303, resp.get_data(as_text=True)[:500]
    assert refunded(app, order.external_id) == 1234


@pytest.mark.parametrize(
    ("currency", "typed", "why"),
    [("JPY", "12.5", "no decimals"), ("EUR", "10.005", "2 decimals"), ("EUR", "NaN", "not an")],
)
def test_refund_form_refuses_what_it_would_have_to_round(
    app, auth, client, stripe, stripe_client, currency, typed, why
):
    """Figure: over-precise or non-finite refund amounts: 422 with the reason, 0 refunds."""
    order = captured_order(app, stripe_client, 5000, currency)
    auth.as_role("admin")
    form = confirm_form(client, "orders:order:refund", order.external_id)
    resp = submit(client, "orders:order:refund", order.external_id, form=form, amount=typed)
    assert resp.status_code == 422
    assert why in resp.get_data(as_text=True)
    assert refunded(app, order.external_id) == 0
    assert stripe_client.v1.refunds.list({"payment_intent": order.payment_intent_id}).data == []
