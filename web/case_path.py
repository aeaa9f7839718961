"""The board's forms whose choices depend on the case, and the citizens a return visit calls.

- The reject form offers the configured public reasons (`[[rejection_reasons]]`).
- A case that other cases were merged into is called back to every complainant: its own and
  each merged case's. The visit form lets the supervisor say whom they called.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask_babel import gettext as _
from wtforms.fields.choices import SelectChoice

from triage.models import Case, ReturnVisit, Status
from triage.notifications import without_contact
from triage.privacy import mask_email, mask_name, mask_phone
from web import runtime
from web.forms import RejectForm, VisitForm
from web.i18n import rejection_label


@dataclass(frozen=True)
class CitizenToCall:
    """One complainant to call back for a case; contact masked for external supervisors.

    `number` is None for the case's own complainant, else the merged case's tracking number.
    `visits` are the visits recorded for this citizen, oldest first.
    """

    number: str | None
    name: str
    phone: str
    email: str
    visits: list[ReturnVisit]

    @property
    def latest_visit(self) -> ReturnVisit | None:
        return self.visits[-1] if self.visits else None


def citizens_to_call(case: Case, merged: list[Case], masked: bool) -> list[CitizenToCall]:
    """`case`'s own complainant first, then those of the cases `merged` into it."""

    def row(number: str | None, source: Case, visits: list[ReturnVisit]) -> CitizenToCall:
        if masked:
            return CitizenToCall(
                number,
                mask_name(source.contact_name),
                mask_phone(source.contact_phone) if source.contact_phone else "",
                mask_email(source.contact_email),
                visits,
            )
        return CitizenToCall(
            number, source.contact_name, source.contact_phone, source.contact_email, visits
        )

    rows = [row(None, case, case.own_visits)]
    rows += [row(m.tracking_number, m, case.visits_of(m)) for m in merged]
    return rows


def reject_form() -> RejectForm:
    form = RejectForm(prefix="reject")
    outcomes = runtime().settings.rejection_outcomes()
    form.outcome.choices = [SelectChoice("", _("— choose —"))] + [
        SelectChoice(code, rejection_label(code)) for code in outcomes
    ]
    return form


def visit_form(case: Case, merged: list[Case], *, offered_only: bool) -> VisitForm:
    """The return-visit form; its `citizen` choice is "" (the case's own complainant) or a
    merged case's number.

    `offered_only`: list only the citizens who may be called now (the own complainant while
    the case is replied); otherwise accept any, and let the case refuse what is too late.
    """
    form = VisitForm(prefix="visit")
    choices = []
    if not offered_only or case.status == Status.REPLIED:
        choices.append(SelectChoice("", _("The complainant of this case")))
    if not offered_only or case.status in (Status.REPLIED, Status.VISITED):
        choices += [
            SelectChoice(m.tracking_number, _("The citizen of %(n)s", n=m.tracking_number))
            for m in merged
        ]
    form.citizen.choices = choices
    if without_contact(case) and not merged:
        # An anonymous caller (no number, no address): nobody can call or text them back.
        form.channel.choices = [c for c in form.channel.choices if c.value not in ("phone", "sms")]
        if form.channel.data in ("phone", "sms"):
            form.channel.data = None
    return form
