"""Guarded actions on invoices: retry now, mark sent manually, void, bulk retry."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

from flask import url_for
from sqlalchemy.orm import Session
from wtforms import StringField
from wtforms.validators import InputRequired, Length

from console.actions.framework import (
    Action,
    ActionContext,
    ActionError,
    ActionForm,
    Outcome,
    audited_record,
    declare,
    loader,
)
from console.db import utcnow
from console.invoices.models import Invoice, InvoiceStatus
from console.invoices.queries import attention_statement
from console.invoices.services import (
    RETRYABLE,
    Backoff,
    ManualTarget,
    backoff,
    target,
    transmit,
)
from console.payments.gateway import gateway
from console.security.permissions import Permission
from console.templating import money

OPEN = (*RETRYABLE, InvoiceStatus.FAILED)
BULK_LIMIT = 200


load_invoice = loader(Invoice, Invoice.external_id)


def invoice_snapshot(i: Invoice) -> dict[str, Any]:
    return {
        "status": i.status.value,
        "attempts": i.attempts,
        "next_attempt_at": i.next_attempt_at,
        "external_ref": i.external_ref,
        "last_error": i.last_error,
    }


audited_record(Invoice, "invoice", lambda i: i.external_id, invoice_snapshot)


def invoice_url(i: Invoice) -> str:
    return url_for("invoices.detail", external_id=i.external_id)


def invoice_row(i: Invoice) -> tuple[str, str, dict[str, Any]]:
    return "invoices/failed.html", "row", {"invoice": i}


def _describe(i: Invoice) -> list[tuple[str, str]]:
    return [
        ("Invoice", f"{i.external_id} ({i.status.value})"),
        ("Amount", money(i.amount, i.currency)),
        ("Attempts so far", str(i.attempts)),
        ("Last error", i.last_error or "—"),
    ]


def _open_precondition(i: Invoice) -> str | None:
    if i.status not in OPEN:
        return f"the invoice is {i.status.value}."
    return None


def _retry_effect(ctx: ActionContext, i: Invoice) -> Outcome:
    policy = backoff()
    if i.status == InvoiceStatus.FAILED:
        # One more attempt for a person who fixed the cause; failing again keeps it failed.
        policy = Backoff(policy.base_seconds, policy.cap_seconds, i.attempts + 1)
        i.status = InvoiceStatus.GENERATED
    try:
        attempt = transmit(ctx.session, gateway(), i, policy)
    except ManualTarget as exc:
        raise ActionError(str(exc), status=409) from exc
    return Outcome(
        f"Invoice {i.external_id}: {attempt.message}.",
        {"transmitted": attempt.succeeded, **attempt.payload},
        level="success" if attempt.succeeded else "warning",
    )


retry_now = declare(
    Action[Invoice](
        name="invoices:invoice:retry",
        label="Retry now",
        permission=Permission.INVOICES_INVOICE_RETRY,
        target_type="invoice",
        load=load_invoice,
        precondition=_open_precondition,
        describe=lambda i: [
            *_describe(i),
            ("Effect", "Transmits the invoice now, ignoring the backoff for this one attempt."),
        ],
        effect=_retry_effect,
        snapshot=invoice_snapshot,
        return_url=invoice_url,
        row=invoice_row,
        event=lambda i: "invoice.transmitted" if i.status == InvoiceStatus.TRANSMITTED else None,
    )
)


class MarkSentForm(ActionForm):
    external_ref = StringField(
        "External reference (where the invoice was sent)",
        validators=[InputRequired("Enter the external reference."), Length(min=3, max=255)],
    )


def _mark_sent_effect(ctx: ActionContext, i: Invoice) -> Outcome:
    i.status = InvoiceStatus.TRANSMITTED
    i.external_ref = str(ctx.params["external_ref"])
    i.next_attempt_at = None
    return Outcome(f"Invoice {i.external_id} marked as sent manually ({i.external_ref}).")


mark_sent = declare(
    Action[Invoice](
        name="invoices:invoice:mark_sent",
        label="Mark sent manually",
        permission=Permission.INVOICES_INVOICE_MARK_SENT,
        target_type="invoice",
        load=load_invoice,
        precondition=_open_precondition,
        describe=lambda i: [
            *_describe(i),
            ("Effect", "Records that the invoice was delivered outside the console; no retries."),
        ],
        effect=_mark_sent_effect,
        snapshot=invoice_snapshot,
        return_url=invoice_url,
        form=MarkSentForm,
        params=lambda form: {"external_ref": (form.data.get("external_ref") or "").strip()},
        ticket_required=True,
        row=invoice_row,
        event="invoice.transmitted",
    )
)


def _void_effect(ctx: ActionContext, i: Invoice) -> Outcome:
    i.status = InvoiceStatus.VOID
    i.next_attempt_at = None
    return Outcome(f"Invoice {i.external_id} voided.")


void = declare(
    Action[Invoice](
        name="invoices:invoice:void",
        label="Void",
        permission=Permission.INVOICES_INVOICE_VOID,
        target_type="invoice",
        load=load_invoice,
        precondition=_open_precondition,
        describe=lambda i: [
            *_describe(i),
            ("Effect", "Voids the invoice: it will never be transmitted. No money moves."),
        ],
        effect=_void_effect,
        snapshot=invoice_snapshot,
        return_url=invoice_url,
        danger=True,
        row=invoice_row,
        event="invoice.voided",
    )
)


# ------------------------------------------------------------------ bulk retry


@dataclass
class Selection:
    """The invoices a filter selects; its id is the filter's query string."""

    query: str
    filters: dict[str, str]
    invoices: list[Invoice] = field(default_factory=list)
    external_id: str = ""


def load_selection(s: Session, query: str, lock: bool) -> Selection | None:
    filters = {k: v for k, v in parse_qsl("" if query == "all" else query) if k in ("status", "q")}
    stmt = attention_statement(utcnow(), filters).order_by(Invoice.id).limit(BULK_LIMIT)
    if lock:
        stmt = stmt.with_for_update(skip_locked=True)
    invoices = list(s.scalars(stmt))
    return Selection(query, filters, invoices, external_id=query)


def selection_id(filters: dict[str, str]) -> str:
    """A URL-safe id for a filter; `all` for no filter."""
    return urlencode(sorted((k, v) for k, v in filters.items() if k in ("status", "q") and v)) or (
        "all"
    )


def _bulk_effect(ctx: ActionContext, sel: Selection) -> Outcome:
    results: list[dict[str, Any]] = []
    policy = backoff()
    gw = gateway()
    for invoice in sel.invoices:
        if invoice.status not in RETRYABLE:
            results.append({"invoice": invoice.external_id, "result": "skipped", "why": "failed"})
            continue
        nested = ctx.session.begin_nested()  # one bad row never stops the others
        try:
            if target() == "manual":
                raise ManualTarget("INVOICE_TARGET is manual")
            attempt = transmit(ctx.session, gw, invoice, policy)
            nested.commit()
            results.append(
                {
                    "invoice": invoice.external_id,
                    "result": "transmitted" if attempt.succeeded else "failed",
                    "why": attempt.message,
                }
            )
        except Exception as exc:
            nested.rollback()
            results.append({"invoice": invoice.external_id, "result": "error", "why": str(exc)})
    done = sum(r["result"] == "transmitted" for r in results)
    failed = len(results) - done
    return Outcome(
        f"Bulk retry: {done} transmitted, {failed} not transmitted, of {len(results)}. "
        + "; ".join(f"{r['invoice']}: {r['result']}" for r in results[:10])
        + (" ..." if len(results) > 10 else ""),
        {"results": results},
        level="success" if failed == 0 else "warning",
    )


bulk_retry = declare(
    Action[Selection](
        name="invoices:selection:retry",
        label="Retry all shown",
        permission=Permission.INVOICES_INVOICE_RETRY,
        target_type="invoice_selection",
        load=load_selection,
        precondition=lambda sel: None if sel.invoices else "no invoice matches this filter.",
        describe=lambda sel: [
            ("Filter", "all invoices needing attention" if sel.query == "all" else sel.query),
            ("Invoices", f"{len(sel.invoices)} (at most {BULK_LIMIT})"),
            (
                "Effect",
                "Transmits each draft or generated invoice once, row by row; failed ones "
                "are skipped (use Retry now on each). Each row's result is reported.",
            ),
        ],
        effect=_bulk_effect,
        snapshot=lambda sel: {
            "invoices": {i.external_id: i.status.value for i in sel.invoices},
        },
        return_url=lambda sel: url_for("invoices.failed", **dict(sel.filters)),  # type: ignore[arg-type]
        event=lambda i: "invoice.transmitted" if i.status == InvoiceStatus.TRANSMITTED else None,
        event_records=lambda sel: sel.invoices,
    )
)
