"""Administration in the browser, for the admin role only: staff accounts, departments and
their commitments (with where each is configured), links to the API keys and the intake and
outbox health, and the administrators' own audit log (triage/admin_log.py).

The rules live in triage/staff.py; passwords go through the one policy of web/passwords.py.
Every change is written to admin_events in the same transaction, never with a password or a
key in it. Changes made here survive `minsheng init` (rows marked `admin_managed`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import (
    Blueprint,
    abort,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import func, select
from werkzeug.wrappers import Response
from wtforms import BooleanField, PasswordField, RadioField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Email, Length, Optional, ValidationError

from triage import admin_log
from triage.access import Action
from triage.models import Case, Department, Role, User
from triage.outbox import MailStatus, OutgoingMail, Retry, outbox_counts, requeue
from triage.sms import TextMessage, notice_sms_id, sms_counts
from triage.sms import requeue as requeue_sms
from triage.staff import (
    Account,
    StaffChangeRefused,
    add_department,
    add_user,
    change_department,
    change_user,
    department_load,
    find_users,
    hand_over,
    search_text,
    set_active,
    set_successor,
)
from web import db, runtime
from web.auth import requires
from web.commitments import amount, department_rows, extension_text
from web.forms import ActionForm, Form, whole_number
from web.i18n import ROLE_LABELS, department_name, error_text, join_list
from web.mail_lists import health_panel
from web.notices import NOTICE_LABELS
from web.passwords import WeakPassword, check_password, set_generated_password, set_password

bp = Blueprint("admin", __name__, url_prefix="/admin")
USERS_PAGE = 50

# The admin log's actions, as the log page names them.
ADMIN_ACTIONS = {
    "user_added": _l("account added"),
    "user_changed": _l("account changed"),
    "user_deactivated": _l("account deactivated"),
    "user_reactivated": _l("account reactivated"),
    "password_reset": _l("password reset"),
    "department_added": _l("department added"),
    "department_changed": _l("department changed"),
    "api_key_issued": _l("API key issued"),
    "api_key_revoked": _l("API key revoked"),
    "outbox_retried": _l("outbox: sent again"),
    "view_shared": _l("shared case list view saved"),
    "view_unshared": _l("shared case list view deleted"),
}


# The details' names, as the log page shows them.
ADMIN_DETAILS = {
    "display_name": _l("Display name"),
    "role": _l("Role"),
    "department": _l("Department"),
    "head": _l("head"),
    "email": _l("Email"),
    "name": _l("Name (Chinese)"),
    "name_en": _l("Name (English)"),
    "active": _l("Active"),
    "chosen_by": _l("Password"),
    "change_at_sign_in": _l("Must choose their own at the next sign-in"),
    "why": _l("Why"),
    "outcome": _l("Outcome"),
    "case": _l("Case"),
    "successor": _l("Department that takes over"),
    "department_deactivated": _l("Because this department was deactivated"),
    "cases_transferred": _l("Cases in hand transferred"),
    "accounts_moved": _l("Accounts moved"),
    "accounts_deactivated": _l("Accounts deactivated"),
}


# What an outbox retry did (triage.outbox.Retry), as the admin log names it.
RETRY_OUTCOMES = {
    "requeued": _l("failed before: queued again"),
    "brought_forward": _l("was waiting: brought forward"),
    "already_due": _l("due already: nothing to do"),
    "sending": _l("being sent: left alone"),
    "sent": _l("sent already: not sent again"),
    "sent_instead": _l("told by text message instead: not sent again"),
}


# A detail's name for the events of one kind, where the same name means another thing there:
# an API key's "name" is whom the key is for, not a department's Chinese name.
ACTION_DETAILS = {
    "api_key_issued": {"name": _l("Who the key is for")},
    "api_key_revoked": {"name": _l("Who the key is for")},
    "view_shared": {"role": _l("For"), "query": _l("List"), "default": _l("default")},
    "view_unshared": {"role": _l("For"), "query": _l("List")},
}

# What an event was done to (its `target`, "<kind> <code>"), by kind, as the log names it.
TARGET_KINDS = {
    "user": _l("Account"),
    "department": _l("Department"),
    "api key": _l("API key"),
    "view": _l("Shared view"),
}


def detail_label(action: str, name: str) -> str:
    """The label of the detail `name` of an event of `action`, in the user's language."""
    label = ACTION_DETAILS.get(action, {}).get(name) or ADMIN_DETAILS.get(name)
    return str(label) if label is not None else name


def event_departments(events: list[admin_log.AdminEvent]) -> dict[str, str]:
    """The departments that `events` name by code (their target, their `department` and
    `successor` details), as {code: name in the user's language}: one query for a page."""
    codes: set[str] = set()
    for e in events:
        if e.target.startswith("department "):
            codes.add(e.target.removeprefix("department "))
        for key in ("department", "successor", "department_deactivated"):
            value = (e.details or {}).get(key)
            values = value if isinstance(value, list) else [value]
            codes.update(v for v in values if isinstance(v, str) and v)
    if not codes:
        return {}
    rows = db().scalars(select(Department).where(Department.code.in_(sorted(codes))))
    return {d.code: department_name(d) for d in rows}


@bp.context_processor
def _labels() -> dict[str, object]:
    return {
        "ADMIN_ACTIONS": ADMIN_ACTIONS,
        "ADMIN_DETAILS": ADMIN_DETAILS,
        "RETRY_OUTCOMES": RETRY_OUTCOMES,
        "TARGET_KINDS": TARGET_KINDS,
        "detail_label": detail_label,
    }


def _now() -> datetime:
    return datetime.now(UTC)


def _me() -> User:
    return current_user._get_current_object()  # type: ignore[no-any-return]


def _no_store(body: str, status: int = 200) -> Response:
    """A page that may show a password: never kept by a cache or the browser's history."""
    response = make_response(body, status)
    response.headers["Cache-Control"] = "no-store"
    return response


def _role_choices() -> list[SelectChoice]:
    return [SelectChoice(str(r), str(ROLE_LABELS.get(str(r), r))) for r in Role]


def _department_choices(include_inactive: bool = False) -> list[SelectChoice]:
    query = select(Department).order_by(Department.id)
    if not include_inactive:
        query = query.where(Department.active.is_(True))
    return [SelectChoice("", _("— none —"))] + [
        SelectChoice(d.code, department_name(d)) for d in db().scalars(query)
    ]


class AccountForm(Form):
    display_name = StringField(_l("Display name"), validators=[Optional(), Length(max=200)])
    role = SelectField(_l("Role"))
    department = SelectField(_l("Department"), validators=[Optional()])
    head = BooleanField(_l("Head of the department (signs replies off, gets escalations)"))
    email = StringField(
        _l("Email"),
        validators=[Optional(), Email(_l("Not an email address.")), Length(max=200)],
    )

    def fill_choices(self) -> None:
        self.role.choices = _role_choices()
        self.department.choices = _department_choices()


def _check_chosen_password(form: Any, field: Any) -> None:
    if form.password_mode.data != "set":
        if field.data:
            # The page disables the field when "generate" is chosen (admin.js); without the
            # script a typed password would otherwise be dropped without a word.
            raise ValidationError(
                _(
                    "A password was typed, but “Generate” is chosen: choose “Set this "
                    "password” to use it, or empty the field."
                )
            )
        return
    if not field.data:
        raise ValidationError(_("Type the password, or let the system generate one."))
    try:
        check_password(field.data, form.username_for_policy(), form.names_for_policy())
    except WeakPassword as e:
        raise ValidationError(str(e)) from e


class PasswordChoice(Form):
    password_mode = RadioField(
        _l("Password"),
        choices=[
            SelectChoice("generate", _l("Generate a one-time password (shown once)")),
            SelectChoice("set", _l("Set this password")),
        ],
        default="generate",
    )
    password = PasswordField(_l("New password"), validators=[_check_chosen_password])

    def username_for_policy(self) -> str:
        return ""

    def names_for_policy(self) -> list[str]:
        """The account's names a password may not contain (its display name)."""
        return []


class NewUserForm(AccountForm, PasswordChoice):
    username = StringField(
        _l("Username"),
        validators=[DataRequired(_l("Give a username.")), Length(max=80)],
    )

    def username_for_policy(self) -> str:
        return str(self.username.data or "")

    def names_for_policy(self) -> list[str]:
        return [str(self.display_name.data or "")]


class ResetPasswordForm(PasswordChoice):
    def __init__(
        self, *args: Any, username: str = "", display_name: str = "", **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._username = username
        self._display_name = display_name

    def username_for_policy(self) -> str:
        return self._username

    def names_for_policy(self) -> list[str]:
        return [self._display_name]


class DepartmentForm(Form):
    code = StringField(_l("Code"), validators=[Optional(), Length(max=40)])
    name = StringField(
        _l("Name (Chinese)"), validators=[DataRequired(_l("Give a name.")), Length(max=200)]
    )
    name_en = StringField(_l("Name (English)"), validators=[Optional(), Length(max=200)])
    email = StringField(
        _l("Email"),
        validators=[Optional(), Email(_l("Not an email address.")), Length(max=200)],
    )
    active = BooleanField(_l("Active (cases may be dispatched to it)"), default=True)
    successor = SelectField(_l("Department that takes over"), validators=[Optional()])
    staff = RadioField(
        _l("Its active accounts"),
        choices=[
            SelectChoice("move", _l("move to the department that takes over (head flag dropped)")),
            SelectChoice("deactivate", _l("deactivate")),
        ],
        default="move",
        validators=[Optional()],
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.successor.choices = [SelectChoice("", _("— none —"))]

    def fill_successors(self, dept: Department | None) -> None:
        self.successor.choices = [
            c for c in _department_choices() if not dept or c.value != dept.code
        ]


def _account_of(form: AccountForm) -> Account:
    code = form.department.data or ""
    dept = db().scalar(select(Department).where(Department.code == code)) if code else None
    return Account(
        display_name=(form.display_name.data or "").strip(),
        role=form.role.data or "",
        department=dept,
        head=bool(form.head.data),
        email=(form.email.data or "").strip(),
    )


def _new_password(form: PasswordChoice, user: User) -> str | None:
    """Sets the chosen or a generated password; returns the generated one (to show once).
    Either is the administrator's, not the user's: another account's user must choose their
    own at their next sign-in (`User.must_change_password`, web/auth.py), as osTicket and
    Zammad ask. An administrator's own password set here stays theirs."""
    user.must_change_password = user.id != current_user.id
    if form.password_mode.data == "set":
        set_password(user, form.password.data or "")
        return None
    return set_generated_password(user)


def _log(action: str, target: str, **details: Any) -> None:
    admin_log.record(db(), _me(), action, target, _now(), **details)


# -- overview ------------------------------------------------------------------------------


@bp.get("/")
@requires(Action.ADMINISTER)
def index() -> str:
    s = db()
    counts = dict(
        s.execute(
            select(User.role, func.count()).where(User.active.is_(True)).group_by(User.role)
        ).all()
    )
    recent = admin_log.page(s, size=10).events
    return render_template(
        "admin/index.html",
        counts=counts,
        inactive=s.scalar(select(func.count()).select_from(User).where(User.active.is_(False))),
        departments=s.scalar(select(func.count()).select_from(Department)),
        health=health_panel(),
        outbox=outbox_counts(s, _now()),
        sms=sms_counts(s, _now()),
        recent=recent,
        departments_named=event_departments(recent),
    )


# -- accounts ------------------------------------------------------------------------------


@bp.get("/users")
@requires(Action.ADMINISTER)
def users() -> Response:
    """The accounts, USERS_PAGE at a time in username order, found by text (username, name,
    email, department) and filtered by role, department and state; keyset paging
    (`after=`/`before=` a username), so the last page costs what the first does."""
    args = request.args
    status = 200
    try:
        text = search_text(args.get("q", "")[:400])
    except StaffChangeRefused as e:
        flash(error_text(e), "error")
        text, status = "", 400
    role = args.get("role", "")
    department = args.get("department", "")[:40]
    active = args.get("active", "")
    # A value no filter knows is left out and said so, as the case lists do (not 0 rows).
    bad = []
    if role and role not in set(Role):
        bad.append(_("Role"))
        role = ""
    if (
        department
        and db().scalar(select(Department.id).where(Department.code == department)) is None
    ):
        bad.append(_("Department"))
        department = ""
    if active and active not in ("yes", "no"):
        bad.append(_("State"))
        active = ""
    if bad:
        flash(_("Not understood and left out: %(names)s.", names=join_list(bad)), "error")
    page = find_users(
        db(),
        text=text,
        role=role,
        department=department,
        active={"yes": True, "no": False}.get(active),
        after=args.get("after", "")[:80],
        before=args.get("before", "")[:80],
        size=USERS_PAGE,
    )
    kept = {
        k: v
        for k, v in (("q", text), ("role", role), ("department", department), ("active", active))
        if v
    }
    body = render_template(
        "admin/users.html",
        rows=page.rows,
        page=page,
        kept=kept,
        q=text,
        role=role,
        department=department,
        active=active,
        roles=_role_choices(),
        departments=_department_choices(include_inactive=True)[1:],
    )
    return make_response(body, status)


@bp.route("/users/new", methods=["GET", "POST"])
@requires(Action.ADMINISTER)
def new_user() -> Response | str:
    form = NewUserForm()
    form.fill_choices()
    if not form.validate_on_submit():
        status = 400 if request.method == "POST" else 200
        return _no_store(render_template("admin/user_new.html", form=form), status)
    try:
        user = add_user(db(), form.username.data or "", _account_of(form))
        shown = _new_password(form, user)
    except StaffChangeRefused as e:
        form.username.errors = [*form.username.errors, error_text(e)]
        return _no_store(render_template("admin/user_new.html", form=form), 400)
    _log(
        "user_added",
        f"user {user.username}",
        role=user.role,
        department=user.department.code if user.department else None,
        head=user.head,
        email=user.email,
        display_name=user.display_name,
        chosen_by="generated" if shown else "admin",
        change_at_sign_in=user.must_change_password,
    )
    flash(_("Account %(name)s added.", name=user.username), "info")
    if shown is None:
        return redirect(url_for("admin.user", user_id=user.id))
    return _no_store(render_template("admin/password_shown.html", user=user, password=shown), 201)


def _user_or_404(user_id: int) -> User:
    user = db().get(User, user_id)
    if user is None:
        abort(404)
    return user


def _user_page(user: User, form: AccountForm | None = None, status: int = 200) -> Response:
    if form is None:
        form = AccountForm(
            data={
                "display_name": user.display_name,
                "role": user.role,
                "department": user.department.code if user.department else "",
                "head": user.head,
                "email": user.email,
            }
        )
        form.fill_choices()
    history = list(
        db().scalars(
            select(admin_log.AdminEvent)
            .where(admin_log.AdminEvent.target == f"user {user.username}")
            .order_by(admin_log.AdminEvent.id.desc())
            .limit(20)
        )
    )
    return _no_store(
        render_template(
            "admin/user.html",
            user=user,
            form=form,
            password_form=ResetPasswordForm(
                prefix="pw", username=user.username, display_name=user.display_name
            ),
            action_form=ActionForm(),
            history=history,
            departments_named=event_departments(history),
            is_me=user.id == _me().id,
        ),
        status,
    )


@bp.route("/users/<int:user_id>", methods=["GET", "POST"])
@requires(Action.ADMINISTER)
def user(user_id: int) -> Response:
    user = _user_or_404(user_id)
    if request.method == "GET":
        return _user_page(user)
    form = AccountForm()
    form.fill_choices()
    if not form.validate_on_submit():
        return _user_page(user, form, 400)
    try:
        changes = change_user(db(), user, _account_of(form))
    except StaffChangeRefused as e:
        flash(error_text(e), "error")
        return _user_page(user, form, 409)
    if changes:
        _log("user_changed", f"user {user.username}", **changes)
        flash(_("Account %(name)s changed.", name=user.username), "info")
    else:
        flash(_("Nothing changed."), "info")
    return redirect(url_for("admin.user", user_id=user.id))


def _set_active(user_id: int, active: bool) -> Response:
    user = _user_or_404(user_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        changed = set_active(db(), user, active, _me())
    except StaffChangeRefused as e:
        flash(error_text(e), "error")
        return _user_page(user, status=409)
    if changed:
        _log(
            "user_reactivated" if active else "user_deactivated",
            f"user {user.username}",
            active=[not active, active],
        )
        flash(
            _("Account %(name)s reactivated.", name=user.username)
            if active
            else _(
                "Account %(name)s deactivated: it cannot sign in, and its sessions ended.",
                name=user.username,
            ),
            "info",
        )
    return redirect(url_for("admin.user", user_id=user.id))


@bp.post("/users/<int:user_id>/deactivate")
@requires(Action.ADMINISTER)
def deactivate(user_id: int) -> Response:
    return _set_active(user_id, False)


@bp.post("/users/<int:user_id>/reactivate")
@requires(Action.ADMINISTER)
def reactivate(user_id: int) -> Response:
    return _set_active(user_id, True)


@bp.post("/users/<int:user_id>/password")
@requires(Action.ADMINISTER)
def reset_password(user_id: int) -> Response:
    user = _user_or_404(user_id)
    form = ResetPasswordForm(prefix="pw", username=user.username, display_name=user.display_name)
    if not form.validate_on_submit():
        flash("; ".join(str(m) for errs in form.errors.values() for m in errs), "error")
        return _user_page(user, status=400)
    shown = _new_password(form, user)
    user.admin_managed = True
    _log(
        "password_reset",
        f"user {user.username}",
        chosen_by="generated" if shown else "admin",
        change_at_sign_in=user.must_change_password,
    )
    if shown is None:
        flash(
            _(
                "Password of %(name)s set; its sessions were signed out. They choose a "
                "password of their own at their next sign-in.",
                name=user.username,
            )
            if user.must_change_password
            else _("Password of %(name)s set; its sessions were signed out.", name=user.username),
            "info",
        )
        return redirect(url_for("admin.user", user_id=user.id))
    return _no_store(render_template("admin/password_shown.html", user=user, password=shown))


# -- departments ---------------------------------------------------------------------------


def _sources(dept: Department) -> dict[str, str]:
    """Where the department and its time limits come from, for the page."""
    settings = runtime().settings
    configured = next((d for d in settings.departments if d.code == dept.code), None)
    if dept.admin_managed:
        entry = _("the database (changed in these admin pages; `minsheng init` keeps it)")
    elif configured is not None:
        entry = _('config.toml [[departments]] code = "%(code)s"', code=dept.code)
    else:
        entry = _("the database (no longer in config.toml)")
    overrides = [
        i for i, o in enumerate(settings.time_limits.overrides) if o.department == dept.code
    ]
    if overrides:
        limits = _(
            "config.toml [[time_limits.overrides]] for this department (entry %(n)s)",
            n=", ".join(str(i + 1) for i in overrides),
        )
    elif configured is not None and configured.handling_working_days:
        limits = _("config.toml [[departments]] handling_working_days, the rest from [time_limits]")
    else:
        limits = _("config.toml [time_limits] (the office's defaults)")
    return {"entry": entry, "limits": limits}


@bp.get("/departments")
@requires(Action.ADMINISTER)
def departments() -> str:
    rows = list(db().scalars(select(Department).order_by(Department.id)))
    return render_template(
        "admin/departments.html",
        rows=[(d, _sources(d), department_rows(d.code)) for d in rows],
        form=DepartmentForm(prefix="new"),
        amount=amount,
        extension_text=extension_text,
    )


@bp.post("/departments")
@requires(Action.ADMINISTER)
def add_department_view() -> Response | str:
    form = DepartmentForm(prefix="new")
    if not form.validate_on_submit():
        flash("; ".join(str(m) for errs in form.errors.values() for m in errs), "error")
        return redirect(url_for("admin.departments"))
    try:
        dept = add_department(
            db(),
            form.code.data or "",
            form.name.data or "",
            form.name_en.data or "",
            form.email.data or "",
        )
    except StaffChangeRefused as e:
        flash(error_text(e), "error")
        return redirect(url_for("admin.departments"))
    _log("department_added", f"department {dept.code}", name=dept.name, name_en=dept.name_en)
    flash(_("Department %(name)s added.", name=dept.name), "info")
    return redirect(url_for("admin.department", code=dept.code))


def _department_or_404(code: str) -> Department:
    dept = db().scalar(select(Department).where(Department.code == code))
    if dept is None:
        abort(404)
    return dept


def _deactivation(dept: Department, form: DepartmentForm) -> dict[str, Any] | None:
    """Hands the department's cases in hand and its accounts over before it is deactivated
    (triage/staff.hand_over), and logs each account changed; what was done for the
    department's own log entry, or None if nothing was to hand over. Raises
    StaffChangeRefused (nothing changed then)."""
    code = form.successor.data or ""
    successor = db().scalar(select(Department).where(Department.code == code)) if code else None
    done = hand_over(db(), dept, successor, form.staff.data or "move", _me(), _now())
    if not (done.cases or done.moved or done.deactivated):
        return None
    for name in done.moved:
        _log(
            "user_changed",
            f"user {name}",
            department=[dept.code, done.successor],
            # A head moved is a handler there: the successor has its own head.
            **({"head": [True, False]} if name in done.heads_dropped else {}),
            department_deactivated=dept.code,
        )
    for name in done.deactivated:
        _log(
            "user_deactivated",
            f"user {name}",
            active=[True, False],
            department_deactivated=dept.code,
        )
    return {
        "successor": done.successor,
        "cases_transferred": len(done.cases),
        "accounts_moved": len(done.moved),
        "accounts_deactivated": len(done.deactivated),
    }


@bp.route("/departments/<code>", methods=["GET", "POST"])
@requires(Action.ADMINISTER)
def department(code: str) -> Response | str:
    """A department's names, address and state. Deactivating one that still has cases in
    hand or active accounts needs a department that takes them over (see `hand_over`):
    the page says what it carries and what will happen before the admin saves."""
    dept = _department_or_404(code)
    status = 200
    if request.method == "GET":
        form = DepartmentForm(
            data={
                "name": dept.name,
                "name_en": dept.name_en,
                "email": dept.email,
                "active": dept.active,
                # Inactive: the department a case of it sent for rework goes to now.
                "successor": "" if dept.active else _successor_code(dept),
            }
        )
        form.fill_successors(dept)
    else:
        form = DepartmentForm()
        form.fill_successors(dept)
        status = 400
        if form.validate_on_submit():
            s = db()
            try:
                handed = None
                if dept.active and not form.active.data:
                    handed = _deactivation(dept, form)
                was_active = dept.active
                changes = change_department(
                    s,
                    dept,
                    form.name.data or "",
                    form.name_en.data or "",
                    form.email.data or "",
                    bool(form.active.data),
                )
                if not was_active and not form.active.data:
                    # Still inactive: who takes its work over may change (the first
                    # choice was wrong, or that department was deactivated in turn).
                    code = form.successor.data or ""
                    chosen = (
                        s.scalar(select(Department).where(Department.code == code))
                        if code
                        else None
                    )
                    if (moved := set_successor(s, dept, chosen)) is not None:
                        changes["successor"] = list(moved)
            except StaffChangeRefused as e:
                s.rollback()
                dept = _department_or_404(code)
                flash(error_text(e), "error")
                status = 409
            else:
                if changes:
                    _log(
                        "department_changed",
                        f"department {dept.code}",
                        **changes,
                        **(handed or {}),
                    )
                    flash(_("Department %(code)s changed.", code=dept.code), "info")
                    if handed:
                        flash(
                            _(
                                "%(cases)s cases in hand transferred to %(to)s with their "
                                "deadlines; %(moved)s accounts moved there, %(off)s deactivated.",
                                cases=handed["cases_transferred"],
                                to=handed["successor"],
                                moved=handed["accounts_moved"],
                                off=handed["accounts_deactivated"],
                            ),
                            "info",
                        )
                else:
                    flash(_("Nothing changed."), "info")
                return redirect(url_for("admin.department", code=dept.code))
    body = render_template(
        "admin/department.html",
        dept=dept,
        form=form,
        sources=_sources(dept),
        commitments=department_rows(dept.code),
        amount=amount,
        extension_text=extension_text,
        handlers=db().scalar(
            select(func.count()).select_from(User).where(User.department_id == dept.id)
        ),
        load=department_load(db(), dept),
        successor=None if dept.active else _successor_shown(dept),
    )
    return make_response(body, status)


def _successor_code(dept: Department) -> str:
    """The code of the active department that does the work of the inactive `dept` now
    (`_successor_shown`), "" for none: what the page's choice starts at."""
    shown = _successor_shown(dept)
    return shown.code if shown is not None else ""


def _successor_shown(dept: Department) -> Department | None:
    """The active department a case of the inactive `dept` goes to when reworked (what
    triage/staff.successor_of finds, read without its locks for a page), or None."""
    seen: set[int] = set()
    current: Department | None = dept
    while current is not None and current.id not in seen:
        if current.active:
            return current
        seen.add(current.id)
        current = db().get(Department, current.successor_id) if current.successor_id else None
    return None


# -- the log -------------------------------------------------------------------------------


def _cursor(raw: str) -> int | None:
    """A paging cursor from the address: anything odd is none (the first page)."""
    return whole_number(raw)


@bp.get("/log")
@requires(Action.ADMINISTER)
def log() -> str:
    page = admin_log.page(db(), size=50, before=_cursor(request.args.get("before", "")))
    return render_template(
        "admin/log.html", page=page, departments_named=event_departments(page.events)
    )


# -- the outbox: mail and text messages ----------------------------------------------------

OUTBOX_PAGE = 50
RETRY_MESSAGES = {
    Retry.REQUEUED: _l("#%(id)s failed before: queued again with a fresh count of tries."),
    Retry.BROUGHT_FORWARD: _l("#%(id)s was waiting for its next try: it goes on the next pass."),
    Retry.ALREADY_DUE: _l("#%(id)s is due already: it goes on the next pass."),
    Retry.SENDING: _l("#%(id)s is being sent right now: left alone."),
    Retry.SENT: _l("#%(id)s was sent already: never sent twice."),
    Retry.SENT_INSTEAD: _l(
        "#%(id)s is not sent again: the citizen was told by text message instead, and would "
        "be told twice."
    ),
}


def _case_numbers(case_ids: set[int]) -> dict[int, str]:
    if not case_ids:
        return {}
    rows = db().execute(select(Case.id, Case.tracking_number).where(Case.id.in_(case_ids)))
    return {int(i): str(n) for i, n in rows}


OUTBOX_CURSORS = ("mail_before", "mail_after", "sms_before", "sms_after")


@dataclass(frozen=True)
class OutboxPages:
    """Where one list of the outbox page goes on: `older` the id to read before (the next,
    older page), `newer` the id to read after (the previous, newer page); None at an end."""

    older: int | None
    newer: int | None


def _outbox_page(
    model: type[OutgoingMail] | type[TextMessage],
    status: str,
    before: int | None,
    after: int | None,
) -> tuple[list[Any], OutboxPages]:
    """OUTBOX_PAGE rows of `model` (of `status`, if given), newest first: those older than
    id `before`, or the ones just newer than id `after`, or the newest. Keyset on the id:
    one read of OUTBOX_PAGE + 1 rows however deep the page, and one more to know whether
    a newer page exists."""
    query = select(model)
    # Without a filter, all but a notice's text message held for its mail (triage/sms.py).
    query = query.where(model.status == status if status else model.status != "held")
    if after is not None and before is None:
        rows = list(
            db().scalars(
                query.where(model.id > after).order_by(model.id.asc()).limit(OUTBOX_PAGE + 1)
            )
        )
        newer = len(rows) > OUTBOX_PAGE
        rows = rows[:OUTBOX_PAGE][::-1]
        older = db().scalar(query.with_only_columns(model.id).where(model.id <= after).limit(1))
        return rows, OutboxPages(
            rows[-1].id if rows and older is not None else None,
            rows[0].id if newer else None,
        )
    query_page = query.where(model.id < before) if before is not None else query
    rows = list(db().scalars(query_page.order_by(model.id.desc()).limit(OUTBOX_PAGE + 1)))
    more = len(rows) > OUTBOX_PAGE
    rows = rows[:OUTBOX_PAGE]
    newer = (
        before is not None
        and rows
        and db().scalar(query.with_only_columns(model.id).where(model.id > rows[0].id).limit(1))
    )
    return rows, OutboxPages(
        rows[-1].id if more else None,
        rows[0].id if newer else None,
    )


def _sent_instead(mails: list[OutgoingMail]) -> dict[int, TextMessage]:
    """{mail id: the text message sent in its place} for the failed notice mails of the page
    whose held stand-in went instead (triage/sms.release_held); one query."""
    wanted = {
        sid: m.id for m in mails if m.status == "failed" and (sid := notice_sms_id(m.message_id))
    }
    if not wanted:
        return {}
    found = db().scalars(
        select(TextMessage).where(
            TextMessage.sms_id.in_(list(wanted)), TextMessage.status != "held"
        )
    )
    return {wanted[t.sms_id]: t for t in found}


@bp.get("/outbox")
@requires(Action.ADMINISTER)
def outbox() -> str:
    """The newest mails and text messages (OUTBOX_PAGE of each, or of one status), with
    their tries, last error and case, and a retry button for those failed or waiting."""
    args = request.args
    status = args.get("status", "")
    status = status if status in set(MailStatus) else ""
    s = db()
    now = _now()
    cursor = {k: _cursor(args.get(k, "")) for k in OUTBOX_CURSORS}
    mails, mail_pages = _outbox_page(
        OutgoingMail, status, cursor["mail_before"], cursor["mail_after"]
    )
    texts, sms_pages = _outbox_page(TextMessage, status, cursor["sms_before"], cursor["sms_after"])
    # Each list pages on its own; its links keep the filter and the other list's place.
    kept: dict[str, Any] = {k: v for k, v in cursor.items() if v is not None}
    if status:
        kept["status"] = status

    def link(channel: str, before: int | None = None, after: int | None = None) -> str:
        params = {**kept, f"{channel}_before": before, f"{channel}_after": after}
        return url_for(
            "admin.outbox",
            _anchor=f"outbox-{channel}",
            **{k: v for k, v in params.items() if v is not None},
        )

    pager = {
        channel: {
            "older": link(channel, before=pages.older) if pages.older else None,
            "newer": link(channel, after=pages.newer) if pages.newer else None,
            "newest": link(channel)
            if cursor[f"{channel}_before"] or cursor[f"{channel}_after"]
            else None,
        }
        for channel, pages in (("mail", mail_pages), ("sms", sms_pages))
    }
    numbers = _case_numbers(
        {m.case_id for m in mails if m.case_id} | {t.case_id for t in texts if t.case_id}
    )
    instead = _sent_instead(mails)
    return render_template(
        "admin/outbox.html",
        mails=mails,
        texts=texts,
        pager=pager,
        numbers=numbers,
        instead=instead,
        status=status,
        statuses=list(MailStatus),
        mail_counts=outbox_counts(s, now),
        sms_counts=sms_counts(s, now),
        sms_configured=bool(runtime().settings.sms.url),
        action_form=ActionForm(),
        now=now,
        NOTICE_LABELS=NOTICE_LABELS,
    )


@bp.post("/outbox/<channel>/<int:item_id>/retry")
@requires(Action.ADMINISTER)
def outbox_retry(channel: str, item_id: int) -> Response:
    """Sends a failed or waiting mail (`channel` "mail") or text message ("sms") on the next
    pass of the sender (`requeue`); logged in the admin log with what was done."""
    if not ActionForm().validate_on_submit():
        abort(400)
    s = db()
    now = _now()
    item: OutgoingMail | TextMessage | None
    if channel == "mail":
        item = s.get(OutgoingMail, item_id)
        outcome = requeue(s, item, now=now) if item is not None else None
    elif channel == "sms":
        item = s.get(TextMessage, item_id)
        outcome = requeue_sms(s, item, now=now) if item is not None else None
    else:
        abort(404)
    if item is None or outcome is None:
        abort(404)
    _log(
        "outbox_retried",
        f"{channel} #{item_id}",
        outcome=str(outcome),
        case=_case_numbers({item.case_id}).get(item.case_id) if item.case_id else None,
    )
    done = outcome in (Retry.REQUEUED, Retry.BROUGHT_FORWARD)
    flash(str(RETRY_MESSAGES[outcome]) % {"id": item_id}, "info" if done else "error")
    return redirect(url_for("admin.outbox", status=request.form.get("status") or None))
