"""Login and first-run forms (flask-wtf: CSRF included)."""

from __future__ import annotations

from collections.abc import Callable

from flask_wtf import FlaskForm
from wtforms import Field, PasswordField, StringField
from wtforms.validators import EqualTo, InputRequired, Length, ValidationError

from glimpser.auth.passwords import MAX_PASSWORD_LENGTH, password_problem
from glimpser.auth.users import MAX_USERNAME, username_problem


def _rule(check: Callable[[str], str | None]) -> Callable[[FlaskForm, Field], None]:
    """Turn a domain check (the one create_user applies too) into a form validator."""

    def validate(_form: FlaskForm, field: Field) -> None:
        problem = check(
            (field.data or "").strip() if field.type == "StringField" else field.data or ""
        )
        if problem:
            raise ValidationError(problem)

    return validate


class LoginForm(FlaskForm):
    username = StringField(
        "Username",
        validators=[InputRequired(), Length(max=MAX_USERNAME)],
        render_kw={"autocomplete": "username", "autofocus": True},
    )
    password = PasswordField(
        "Password",
        validators=[InputRequired(), Length(max=MAX_PASSWORD_LENGTH)],
        render_kw={"autocomplete": "current-password"},
    )


class SetupForm(FlaskForm):
    username = StringField(
        "Admin username",
        validators=[InputRequired(), _rule(username_problem)],
        render_kw={"autocomplete": "username", "autofocus": True},
    )
    password = PasswordField(
        "Password",
        validators=[InputRequired()],
        render_kw={"autocomplete": "new-password"},
    )
    confirm = PasswordField(
        "Repeat password",
        validators=[InputRequired(), EqualTo("password", message="Passwords do not match.")],
        render_kw={"autocomplete": "new-password"},
    )

    def validate_password(self, field: Field) -> None:
        """The password policy, which needs the username too."""
        problem = password_problem(field.data or "", (self.username.data or "").strip())
        if problem:
            raise ValidationError(problem)
