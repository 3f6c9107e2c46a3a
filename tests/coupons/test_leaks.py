"""Coupon reservation leaks (runbook 002): release, repair, and expiry jobs racing."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import select

from console import db
from console.audit.models import AuditEntry
from console.coupons.models import Coupon, CouponReservation
from console.coupons.services import expire_reservations
from console.db import utcnow
from console.ops.models import JobRun, JobStatus
from tests.actions.helpers import confirm_form, submit
from tests.conftest import AuthActions
from tests.factories import make_coupon


def coupon_state(app, code: str) -> tuple[int, dict[str, int]]:
    with app.app_context():
        s = db.session()
        coupon = s.scalar(select(Coupon).where(Coupon.code == code))
        statuses = Counter(
            r.status.value
            for r in s.scalars(
                select(CouponReservation).where(CouponReservation.coupon_id == coupon.id)
            )
        )
        return coupon.reserved_count, dict(statuses)


def audit(app, action: str) -> list[AuditEntry]:
    with app.app_context():
        return list(
            db.session().scalars(
                select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)
            )
        )


@pytest.fixture
def leaking(app) -> str:
    """Reserved count 4: three expired holds and one live one."""
    with app.app_context():
        coupon = make_coupon(db.session(), code="WELCOME10", expired=3, live=1)
        db.session().commit()
        return coupon.code


@pytest.fixture
def miscounted(app) -> str:
    """Counts 7 reservations but holds two live ones (a double increment)."""
    with app.app_context():
        coupon = make_coupon(db.session(), code="SUMMER15", expired=0, live=2, reserved_count=7)
        db.session().commit()
        return coupon.code


def test_the_page_lists_leaks_and_wrong_counts(app, auth, client, leaking, miscounted):
    with app.app_context():
        make_coupon(db.session(), code="HEALTHY", expired=0, live=2)
        db.session().commit()
    auth.as_role("support")
    html = client.get("/coupons/leaks").get_data(as_text=True)
    assert "row-coupon-WELCOME10" in html and "row-coupon-SUMMER15" in html
    assert "row-coupon-HEALTHY" not in html
    assert "3 expired reservations still counted" in html
    assert "Count is 7 for 2 held reservations" in html
    assert "/actions/coupons:reservation:release/WELCOME10" in html
    assert "/actions/coupons:reserved_count:repair/" not in html  # admin only
    filtered = client.get("/coupons/leaks?code=summ").get_data(as_text=True)
    assert "row-coupon-SUMMER15" in filtered and "row-coupon-WELCOME10" not in filtered
    assert "No leaking coupon matches" in client.get("/coupons/leaks?code=NOPE").get_data(
        as_text=True
    )


def test_release_one_coupon_previews_and_audits_the_counts(app, auth, client, leaking):
    auth.as_role("support")
    page = client.get(f"/actions/coupons:reservation:release/{leaking}").get_data(as_text=True)
    assert "3 → 0" in page and "4 → 1" in page  # the preview
    second_tab = confirm_form(client, "coupons:reservation:release", leaking)
    resp = submit(client, "coupons:reservation:release", leaking, reason="Expiry job was down")
    assert resp.status_code == 303
    assert coupon_state(app, leaking) == (1, {"expired": 3, "reserved": 1})
    [entry] = audit(app, "coupons:reservation:release")
    assert entry.outcome == "success" and entry.actor_roles == ["support"]
    assert entry.details["before"] == {"reserved_count": 4, "held": 4, "live": 1, "expired_held": 3}
    assert entry.details["after"] == {"reserved_count": 1, "held": 1, "live": 1, "expired_held": 0}
    assert entry.details["extra"]["coupons"] == [
        {"code": leaking, "released": 3, "reserved_count_before": 4, "reserved_count_after": 1}
    ]
    again = submit(client, "coupons:reservation:release", leaking, form=second_tab)
    assert again.status_code == 409  # nothing left to release
    assert coupon_state(app, leaking) == (1, {"expired": 3, "reserved": 1})
    assert "coupons:reservation:release" in client.get(f"/coupons/{leaking}").get_data(as_text=True)


def test_release_all_releases_every_coupon_once(app, auth, client, leaking):
    with app.app_context():
        make_coupon(db.session(), code="SPRING25", expired=2, live=0)
        db.session().commit()
    auth.as_role("support")
    page = client.get("/actions/coupons:reservation:release_all/all").get_data(as_text=True)
    assert "5 → 0" in page and "reserved count 4 → 1" in page and "reserved count 2 → 0" in page
    form = confirm_form(client, "coupons:reservation:release_all", "all")
    first = submit(client, "coupons:reservation:release_all", "all", form=form)
    repeat = submit(client, "coupons:reservation:release_all", "all", form=form)  # double click
    assert first.status_code == repeat.status_code == 303
    assert coupon_state(app, leaking) == (1, {"expired": 3, "reserved": 1})
    assert coupon_state(app, "SPRING25") == (0, {"expired": 2})
    [entry] = audit(app, "coupons:reservation:release_all")
    assert entry.details["extra"]["released"] == 5
    assert entry.details["before"]["expired"] == 5 and entry.details["after"]["expired"] == 0
    per_coupon = {e.target_id: e for e in audit(app, "coupons:reservation:release")}
    assert per_coupon["SPRING25"].details["before"] == {"reserved_count": 2}
    assert per_coupon["SPRING25"].details["after"] == {"reserved_count": 0}
    assert "coupons:reservation:release" in client.get("/coupons/SPRING25").get_data(as_text=True)


def test_repair_sets_the_count_to_the_reservations_held(app, auth, client, miscounted):
    auth.as_role("admin")
    page = client.get(f"/actions/coupons:reserved_count:repair/{miscounted}").get_data(as_text=True)
    assert "7 → 2" in page
    resp = submit(client, "coupons:reserved_count:repair", miscounted, reason="Double increment")
    assert resp.status_code == 303
    assert coupon_state(app, miscounted) == (2, {"reserved": 2})
    [entry] = audit(app, "coupons:reserved_count:repair")
    assert entry.details["extra"] == {"reserved_count_before": 7, "reserved_count_after": 2}
    assert entry.details["before"]["reserved_count"] == 7
    assert entry.details["after"]["reserved_count"] == 2


def test_repair_waits_for_the_release_of_expired_holds(app, auth, client, leaking):
    with app.app_context():
        db.session().scalar(select(Coupon).where(Coupon.code == leaking)).reserved_count = 9
        db.session().commit()
    auth.as_role("admin")
    page = client.get(f"/actions/coupons:reserved_count:repair/{leaking}")
    assert "release them first" in page.get_data(as_text=True)
    assert 'name="idempotency_key"' not in page.get_data(as_text=True)  # no confirm form
    crafted = {"csrf_token": auth.csrf_token(), "idempotency_key": "crafted-repair-0001"}
    resp = submit(client, "coupons:reserved_count:repair", leaking, form=crafted)
    assert resp.status_code == 409 and "release them first" in resp.get_data(as_text=True)
    assert submit(client, "coupons:reservation:release", leaking).status_code == 303
    assert coupon_state(app, leaking)[0] == 6  # 9 - 3 released: still wrong
    assert submit(client, "coupons:reserved_count:repair", leaking).status_code == 303
    assert coupon_state(app, leaking) == (1, {"expired": 3, "reserved": 1})


def test_a_stale_repair_is_409_and_changes_nothing(app, auth, client, miscounted):
    auth.as_role("admin")
    form = confirm_form(client, "coupons:reserved_count:repair", miscounted)
    with app.app_context():  # a checkout reserves one more meanwhile
        s = db.session()
        coupon = s.scalar(select(Coupon).where(Coupon.code == miscounted))
        coupon.reserved_count += 1
        s.add(CouponReservation(coupon_id=coupon.id, expires_at=utcnow() + timedelta(minutes=30)))
        s.commit()
    resp = submit(client, "coupons:reserved_count:repair", miscounted, form=form)
    assert resp.status_code == 409
    assert "reserved count 7 → 8" in resp.get_data(as_text=True)
    assert coupon_state(app, miscounted) == (8, {"reserved": 3})
    [entry] = audit(app, "coupons:reserved_count:repair")
    assert entry.outcome == "failed"


def test_the_page_shows_the_last_expiry_job_run(app, auth, client, leaking):
    with app.app_context():
        s = db.session()
        s.add(
            JobRun(
                job="coupons-expire-reservations",
                status=JobStatus.SUCCEEDED,
                started_at=utcnow() - timedelta(hours=3),
                finished_at=utcnow() - timedelta(hours=3),
                scanned=7,
                acted=6,
            )
        )
        s.commit()
    auth.as_role("support")
    html = client.get("/coupons/leaks").get_data(as_text=True)
    assert "last run 3 h" in html and "scanned 7, released 6" in html and ">late<" in html


def _leaks_for_race(app, coupons: int = 4, each: int = 15) -> list[str]:
    with app.app_context():
        s = db.session()
        codes = [make_coupon(s, expired=each, live=1).code for _ in range(coupons)]
        s.commit()
        return codes


def _run_at_once(targets) -> None:
    barrier = threading.Barrier(len(targets))
    errors: list[BaseException] = []

    def run(fn) -> None:
        try:
            barrier.wait()
            fn()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(t,)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors


@pytest.mark.slow
def test_two_expiry_jobs_at_once_release_each_reservation_once(committed_app):
    codes = _leaks_for_race(committed_app)
    acted: list[int] = []

    def job() -> None:
        with committed_app.app_context():  # a session (connection) of its own, as a process
            acted.append(expire_reservations(db.session()).expired)

    _run_at_once([job, job])
    assert sum(acted) == 60  # every leaked reservation once, split between the two runs
    for code in codes:
        assert coupon_state(committed_app, code) == (1, {"expired": 15, "reserved": 1})


@pytest.mark.slow
def test_release_all_and_the_expiry_job_at_once_release_each_once(committed_app, idp):
    codes = _leaks_for_race(committed_app)
    client = committed_app.test_client()
    AuthActions(client, idp).as_role("support")
    form = confirm_form(client, "coupons:reservation:release_all", "all")
    statuses: list[int] = []

    def action() -> None:
        statuses.append(
            submit(client, "coupons:reservation:release_all", "all", form=form).status_code
        )

    acted: list[int] = []

    def job() -> None:
        with committed_app.app_context():
            acted.append(expire_reservations(db.session()).expired)

    _run_at_once([action, job])
    assert statuses == [303]
    for code in codes:
        assert coupon_state(committed_app, code) == (1, {"expired": 15, "reserved": 1})
    [entry] = audit(committed_app, "coupons:reservation:release_all")
    assert entry.details["extra"]["released"] + acted[0] == 60
