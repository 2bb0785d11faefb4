"""The web chat's view of :mod:`rag.settings`: load once, and name every bad variable."""

from __future__ import annotations

from rag.settings import Settings, SettingsError, get_settings


class ConfigError(RuntimeError):
    """The environment does not describe a usable web chat.

    Attributes:
        lines: one ``VARIABLE: message`` line per problem.
    """

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def web_settings() -> Settings:
    """The process settings, plus the checks only the web chat needs.

    Raises:
        ConfigError: a variable is missing or malformed (each line names the variable).
    """
    try:
        settings = get_settings()
    except SettingsError as exc:
        raise ConfigError(str(exc).splitlines() or [str(exc)]) from None
    problems: list[str] = []
    if settings.auth_mode == "oidc" and not settings.issuer_uri:
        problems.append("ISSUER_URI: required when AUTH_MODE=oidc (the Cognito user pool's issuer URL)")
    if not settings.sessions_url and not settings.sessions_table:
        problems.append("SESSIONS_TABLE or SESSIONS_URL: one of them is required by the web chat")
    if problems:
        raise ConfigError(problems)
    return settings
