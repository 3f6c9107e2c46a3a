"""/integrations: keys, endpoints, deliveries; filters in the URL; a fixed number of queries."""

from __future__ import annotations

from console import db
from console.integrations.delivery import new_secret, seal
from console.integrations.keys import issue_key
from console.integrations.models import DeliveryStatus, EventDelivery, WebhookEndpoint
from console.integrations.outbox import emit
from tests.factories import make_order
from tests.test_query_counts import count_queries


def seed(app, n: int) -> None:
    with app.app_context():
        s = db.session()
        if not s.query(WebhookEndpoint).count():
            s.add(WebhookEndpoint(url="http://127.0.0.1:9/h", secret_enc=seal(new_secret()),
                                  created_by_sub="t"))  # fmt: skip
            issue_key(s, name="storefront", shop="Tea shop", scopes=["orders"], actor_sub="t")
            s.flush()
        for _ in range(n):
            emit(s, "order.cancelled", make_order(s), actor={}, reason="r", audit_seq=None)
        s.commit()


def test_page_lists_deliveries_with_filters_and_no_per_row_queries(app, auth, client):
    seed(app, 3)
    auth.as_role("support")
    with count_queries(app) as few:
        html = client.get("/integrations").get_data(as_text=True)
    assert "order.cancelled" in html and "storefront" in html and "http://127.0.0.1:9/h" in html
    assert "Create API key" not in html  # support may not manage keys
    seed(app, 40)
    with count_queries(app) as many:
        assert client.get("/integrations").status_code == 200
    assert len(many) <= len(few) + 1, (len(few), len(many))

    with app.app_context():
        s = db.session()
        d = s.query(EventDelivery).first()
        d.status = DeliveryStatus.FAILED
        s.commit()
        failed_id = d.id
    html = client.get("/integrations?status=failed").get_data(as_text=True)
    assert f'id="row-delivery-{failed_id}"' in html and html.count('id="row-delivery-') == 1
    assert "Redeliver" in html
    empty = client.get("/integrations?type=invoice.voided").get_data(as_text=True)
    assert "No delivery matches." in empty
    page1 = client.get("/integrations?limit=10").get_data(as_text=True)
    assert page1.count('id="row-delivery-') == 10 and 'rel="next"' in page1


def test_auditor_sees_the_page_but_no_buttons(app, auth, client):
    seed(app, 1)
    auth.as_role("auditor")
    html = client.get("/integrations").get_data(as_text=True)
    assert "order.cancelled" in html and "Redeliver" not in html
