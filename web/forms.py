"""The forms of every page; Flask-WTF adds the CSRF token to each."""

from __future__ import annotations

from typing import Any

from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.file import MultipleFileField
from wtforms import (
    BooleanField,
    DateTimeLocalField,
    HiddenField,
    PasswordField,
    RadioField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Email, EqualTo, Length, Optional, ValidationError

from intake.normalise import PhoneError, clean_line, clean_text, normalise_phone
from web.passwords import WeakPassword, check_password


class Form(FlaskForm):
    """Every form of Minsheng: what people type is cleaned before it is validated.

    One-line fields get `clean_line`, text areas `clean_text` (NFKC, no control or bidi
    characters, outer white space gone), so lengths count what is stored and full-width
    digits are digits. Passwords and files are left as they are.
    """

    class Meta:
        def bind_field(self, form: Any, unbound_field: Any, options: dict[str, Any]) -> Any:
            field_class = unbound_field.field_class
            clean = None
            if issubclass(field_class, TextAreaField):
                clean = clean_text
            elif issubclass(field_class, StringField | HiddenField) and not issubclass(
                field_class, PasswordField
            ):
                clean = clean_line
            if clean is not None:
                options["filters"] = (
                    *options.get("filters", ()),
                    lambda v, clean=clean: clean(v) if isinstance(v, str) else v,
                )
            return unbound_field.bind(form=form, **options)


class PhoneNumber:
    """A Chinese mobile, a landline (with or without area code) or an international number;
    the field's data becomes the canonical form (`normalise_phone`)."""

    def __call__(self, form: Any, field: Any) -> None:
        if not field.data:
            return
        try:
            field.data = normalise_phone(field.data)
        except PhoneError as e:
            raise ValidationError(
                _l(
                    "Not a phone number: give a mobile (13800138000), a landline with area "
                    "code (010-87654321) or an international number (+44 20 7946 0958)."
                )
            ) from e


PHONE = PhoneNumber()

# Four Chinese characters make a complaint (路灯不亮); counted after cleaning.
BODY_MIN = 4

KIND_CHOICES = [
    SelectChoice("complaint", _l("Complaint")),
    SelectChoice("suggestion", _l("Suggestion")),
    SelectChoice("inquiry", _l("Inquiry")),
    SelectChoice("praise", _l("Praise")),
]


# What the citizen's form and the operator's call form ask of the same fields.
SUBJECT_RULES = [
    DataRequired(_l("Please give a short subject.")),
    Length(min=2, max=200, message=_l("Between 2 and 200 characters, please.")),
]
BODY_LENGTH = Length(min=BODY_MIN, max=5000, message=_l("Between 4 and 5000 characters, please."))
AT_MOST_100 = Length(max=100, message=_l("At most 100 characters."))
PLACE_LENGTH = Length(max=200, message=_l("At most 200 characters."))


class ComplaintForm(Form):
    token = HiddenField()
    kind = SelectField(_l("Kind"), choices=KIND_CHOICES, default="complaint")
    subject = StringField(_l("Subject"), validators=SUBJECT_RULES)
    body = TextAreaField(
        _l("What happened"),
        validators=[
            DataRequired(_l("Please describe the problem.")),
            BODY_LENGTH,
        ],
    )
    name = StringField(
        _l("Name (optional)"),
        validators=[Optional(), AT_MOST_100],
    )
    phone = StringField(
        _l("Phone (optional)"),
        validators=[Optional(), PHONE],
    )
    email = StringField(
        _l("Email (optional)"),
        validators=[
            Optional(),
            Email(message=_l("Not an email address.")),
            Length(max=200, message=_l("At most 200 characters.")),
        ],
    )
    place = StringField(_l("Place or address (optional)"), validators=[Optional(), PLACE_LENGTH])
    attachments = MultipleFileField(_l("Photos or documents (optional)"))


class TrackForm(Form):
    tracking_number = StringField(
        _l("Tracking number"), validators=[DataRequired(), Length(max=30)]
    )
    query_code = StringField(_l("Query code"), validators=[DataRequired(), Length(max=20)])


class LoginForm(Form):
    username = StringField(_l("Username"), validators=[DataRequired(), Length(max=80)])
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=200)])
    remember = BooleanField(_l("Stay signed in"))


class ChangePasswordForm(Form):
    """The signed-in user's own password: the one policy of web.passwords applies."""

    current = PasswordField(_l("Current password"), validators=[DataRequired(), Length(max=200)])
    new = PasswordField(_l("New password"), validators=[DataRequired()])
    repeat = PasswordField(
        _l("New password again"),
        validators=[DataRequired(), EqualTo("new", message=_l("The two new passwords differ."))],
    )

    def validate_new(self, field: PasswordField) -> None:
        try:
            # As set_password judges it after: with the account's name too.
            check_password(
                field.data or "", current_user.username, [current_user.display_name or ""]
            )
        except WeakPassword as e:
            raise ValidationError(str(e)) from e


class AssignForm(Form):
    department = SelectField(
        _l("Department"), validators=[DataRequired(_l("Choose a department."))]
    )
    reason = StringField(
        _l("Reason (required for a transfer or to re-send it where it came back from)"),
        validators=[Optional(), Length(max=500)],
    )


class ReasonForm(Form):
    reason = TextAreaField(_l("Reason"), validators=[DataRequired(), Length(max=2000)])


class ReplyForm(Form):
    text = TextAreaField(_l("Reply to the citizen"), validators=[DataRequired(), Length(max=10000)])


class RejectForm(Form):
    """Not accepting a complaint: a public reason for the citizen, an internal one for us."""

    outcome = SelectField(
        _l("Reason shown to the citizen"),
        validators=[DataRequired(_l("Choose the reason the citizen will read."))],
    )
    public_reason = TextAreaField(
        _l("Explanation for the citizen (optional, shown on the tracking page)"),
        validators=[Optional(), Length(max=1000)],
    )
    referred_to = StringField(
        _l("Body the citizen should turn to (required for “not ours to handle”)"),
        validators=[Optional(), Length(max=200)],
    )
    reason = TextAreaField(
        _l("Internal reason (not shown to the citizen)"),
        validators=[DataRequired(_l("Give the internal reason.")), Length(max=2000)],
    )


class VisitForm(Form):
    # Empty: the case's own complainant; else the tracking number of a case merged into it.
    citizen = SelectField(_l("Citizen called back"), default="", validators=[Optional()])
    channel = RadioField(
        _l("Called back by"),
        choices=[
            SelectChoice("phone", _l("Phone")),
            SelectChoice("sms", _l("SMS")),
            SelectChoice("web", _l("Web")),
            SelectChoice("visit", _l("On-site visit")),
        ],
        default="phone",
        validators=[DataRequired(_l("Say how the citizen was called back."))],
    )
    reached = RadioField(
        _l("Citizen reached"),
        choices=[SelectChoice("yes", _l("Reached")), SelectChoice("no", _l("Not reached"))],
        validators=[DataRequired()],
    )
    solved = RadioField(
        _l("Problem solved"),
        choices=[SelectChoice("yes", _l("Solved")), SelectChoice("no", _l("Not solved"))],
        validators=[Optional()],
    )
    satisfaction = RadioField(
        _l("Satisfaction"),
        choices=[
            SelectChoice("satisfied", _l("Satisfied")),
            SelectChoice("basic", _l("Basically satisfied")),
            SelectChoice("unsatisfied", _l("Unsatisfied")),
        ],
        validators=[Optional()],
    )
    # The response rate's question (响应率); unanswered counts by the reply's deadline.
    contacted = RadioField(
        _l("Did the department contact the citizen in time?"),
        choices=[
            SelectChoice("yes", _l("Contacted in time")),
            SelectChoice("no", _l("Not in time")),
        ],
        validators=[Optional()],
    )
    note = TextAreaField(_l("Note"), validators=[Optional(), Length(max=2000)])


class CloseForm(Form):
    reason = TextAreaField(_l("Note (required if the citizen is unhappy)"), validators=[Optional()])


class MergeForm(Form):
    target = StringField(
        _l("Merge into tracking number"), validators=[DataRequired(), Length(max=30)]
    )
    reason = StringField(_l("Reason"), validators=[Optional(), Length(max=500)])


class ActionForm(Form):
    """A button with nothing but the CSRF token."""


class PhoneCallForm(Form):
    """An operator's note of a citizen's call (来电记录)."""

    call_id = StringField(
        _l("Call id (from the phone system, optional)"),
        validators=[Optional(), AT_MOST_100],
    )
    kind = SelectField(_l("Kind"), choices=KIND_CHOICES, default="complaint")
    subject = StringField(_l("Subject"), validators=SUBJECT_RULES)
    body = TextAreaField(
        _l("What the caller said"),
        validators=[
            DataRequired(_l("Please write down what the caller said.")),
            BODY_LENGTH,
        ],
    )
    name = StringField(
        _l("Caller's name (optional)"),
        validators=[Optional(), AT_MOST_100],
    )
    phone = StringField(
        _l("Caller's phone"),
        validators=[Optional(), PHONE],
    )
    # The desk (web/operator.py): when the call came (local time; empty: now), where, what
    # the caller asked for, which earlier case it is about, and the form's own key.
    called_at = DateTimeLocalField(
        _l("Call time"), format=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"], validators=[Optional()]
    )
    place = StringField(_l("Place or address (optional)"), validators=[Optional(), PLACE_LENGTH])
    callback = BooleanField(_l("The caller wants to be called back"))
    urgent = BooleanField(_l("Urgent (safety hazard)"))
    # A caller who gives no number, or whose number is withheld: logged without one.
    anonymous = BooleanField(_l("Anonymous caller: no number given or number withheld"))
    about = StringField(validators=[Optional(), Length(max=60)])
    token = HiddenField(validators=[Optional(), Length(max=64)])


class BulkDispatchForm(Form):
    """The triage queue's one dispatch control for the cases ticked (their tracking numbers
    come as the repeated ``case`` field): one department for all, or each its suggestion."""

    department = SelectField(_l("Dispatch the selected cases to"), validators=[DataRequired()])
    reason = StringField(
        _l("Reason (needed to send a case back where it came from)"),
        validators=[Optional(), Length(max=500)],
    )


class SavedViewForm(Form):
    """Saves the case list as shown (its query string) under a name."""

    name = StringField(_l("Name of this view"), validators=[DataRequired(), Length(max=100)])
    query = HiddenField(validators=[Optional(), Length(max=2000)])
    default = BooleanField(_l("Open the case list with it"))
    role = SelectField(_l("For"), validators=[Optional()])


class SatisfactionForm(Form):
    """The citizen's answer through a reply's satisfaction link (web/satisfaction.py)."""

    solved = RadioField(
        _l("Has your problem been solved?"),
        choices=[SelectChoice("yes", _l("Solved")), SelectChoice("no", _l("Not solved"))],
        validators=[DataRequired(_l("Please say whether your problem was solved."))],
    )
    satisfaction = RadioField(
        _l("How satisfied are you with how it was handled?"),
        choices=[
            SelectChoice("satisfied", _l("Satisfied")),
            SelectChoice("basic", _l("Basically satisfied")),
            SelectChoice("unsatisfied", _l("Unsatisfied")),
        ],
        validators=[DataRequired(_l("Please choose how satisfied you are."))],
    )
    contacted = RadioField(
        _l("Did the department contact you in time?"),
        choices=[
            SelectChoice("yes", _l("Yes, in time")),
            SelectChoice("no", _l("No, not in time")),
        ],
        validators=[Optional()],
    )
    comment = TextAreaField(_l("Comment (optional)"), validators=[Optional(), Length(max=2000)])


def whole_number(raw: str | None, *, digits: int = 9) -> int | None:
    """A non-negative whole number typed in an address (a page, a paging cursor): 1 to
    ``digits`` ASCII digits, else None, never an exception. ``str.isdigit`` alone let
    superscripts and other digit-like characters through ("²"), on which ``int`` fails."""
    if raw is None or not 0 < len(raw) <= digits or not raw.isascii() or not raw.isdigit():
        return None
    return int(raw)
