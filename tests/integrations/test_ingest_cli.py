"""`flask --app wsgi ingest load FILE --kind KIND`: streamed, batched, resumable backfill."""

from __future__ import annotations

import json

from sqlalchemy import select

from console import db
from console.audit.models import AuditEntry
from console.inventory.models import InventoryItem
from console.orders.models import Order
from tests.integrations.helpers import records


def order_ids(app) -> set[str]:
    with app.app_context():
        return set(
            db.session().scalars(
                select(Order.external_id).where(Order.external_id.like("ORD-cli%"))
            )
        )


def test_jsonl_backfill_reports_bad_records_and_resumes(app, tmp_path):
    lines = [json.dumps(records(f"cli{i}")["orders"]) for i in range(1, 4)]
    lines.insert(1, "{not json")
    lines.append(json.dumps({**records("cli9")["orders"], "currency": "euros"}))
    path = tmp_path / "orders.jsonl"
    path.write_text("\n".join(lines) + "\n")
    runner = app.test_cli_runner()
    result = runner.invoke(
        args=["ingest", "load", str(path), "--kind", "orders", "--batch-size", "2"]
    )
    assert result.exit_code == 0, result.output
    assert "line 2: invalid: not JSON" in result.output
    assert "line 5: ORD-cli9: invalid: currency" in result.output
    assert "created=3" in result.output and "invalid=2" in result.output
    assert order_ids(app) == {"ORD-cli1", "ORD-cli2", "ORD-cli3"}
    progress = json.loads((tmp_path / "orders.jsonl.progress.json").read_text())
    assert progress["last_line"] == 5

    with path.open("a") as handle:  # the export grew; run again: only the new lines
        handle.write(json.dumps(records("cli4")["orders"]) + "\n")
    again = runner.invoke(args=["ingest", "load", str(path), "--kind", "orders"])
    assert again.exit_code == 0, again.output
    assert "resuming after line 5" in again.output
    assert "created=1 updated=0 unchanged=0 stale=0 invalid=0" in again.output
    assert "ORD-cli4" in order_ids(app)
    restart = runner.invoke(args=["ingest", "load", str(path), "--kind", "orders", "--restart"])
    assert "created=0 updated=0 unchanged=4" in restart.output  # idempotent
    with app.app_context():
        entry = db.session().scalar(select(AuditEntry).where(AuditEntry.target_id == "ORD-cli4"))
        assert entry.actor_sub.startswith("cli:") and entry.outcome == "success"


def test_csv_backfill(app, tmp_path):
    path = tmp_path / "items.csv"
    path.write_text(
        "id,name,stock_count,updated_at\n"
        "SKU-CSV-1,Tea,5,2026-11-01T12:00:00Z\n"
        "SKU-CSV-2,Mug,x,2026-11-01T12:00:00Z\n"
    )
    result = app.test_cli_runner().invoke(
        args=["ingest", "load", str(path), "--kind", "inventory-items"]
    )
    assert result.exit_code == 0, result.output
    assert "line 3: SKU-CSV-2: invalid: stock_count" in result.output
    with app.app_context():
        item = db.session().scalar(select(InventoryItem).where(InventoryItem.sku == "SKU-CSV-1"))
        assert item.stock_count == 5 and item.name == "Tea"


def test_unknown_kind_is_refused(app, tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text("{}\n")
    result = app.test_cli_runner().invoke(args=["ingest", "load", str(path), "--kind", "nope"])
    assert result.exit_code != 0 and "--kind must be one of" in result.output
