"""Campaign job configuration: gateways, quiet hours, frequency cap and the campaigns (TOML).

Example::

    [settings]
    quiet_start = "21:00"        # member's local time
    quiet_end = "09:00"
    cap_messages = 3             # at most 3 messages ...
    cap_days = 7                 # ... per member in 7 days
    max_attempts = 5
    backoff_minutes = 15         # 15, 30, 60, ... between attempts
    unsubscribe_url = "https://rewards.example/u?m={member}&c={channel}&t={token}"
    secret = "change-me"         # signs unsubscribe links

    [smtp]
    host = "127.0.0.1"
    port = 25
    sender = "rewards@example.com"

    [sms]
    url = "twilio://SID:TOKEN@+4930123456/{phone}"

    [[campaign]]
    code = "BDAY"
    trigger = "birthday"         # anniversary tier_upgrade nth_stay points_expiring win_back one_off
    channels = ["email", "sms"]  # first one the member consented to
    bonus_points = 500
    holdout_percent = 10         # kept out, to measure what the campaign brings
    [campaign.templates.en]      # optional: override the shipped template
    subject = "Happy birthday {{ first_name }}"
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from datetime import date, time
from pathlib import Path
from typing import Any

from staypoint.central.campaigns.channels import SmtpSettings
from staypoint.central.campaigns.templates import DEFAULTS, Template

TRIGGERS = tuple(DEFAULTS)


class ConfigError(ValueError):
    """A campaign configuration that cannot be run."""


@dataclass(frozen=True)
class Campaign:
    code: str
    trigger: str
    channels: tuple[str, ...] = ("email", "sms")
    bonus_points: int = 0
    bonus_voucher: str | None = None  # a reward code: a voucher for it, as a gift
    holdout_percent: int = 0
    suggest_offer: bool = True
    nth: int = 5  # nth_stay
    segment: str | None = None  # one_off (and an optional filter for the others)
    segment_version: int | None = None
    starts: date | None = None
    ends: date | None = None
    templates: dict[str, Template] = field(default_factory=dict)


@dataclass(frozen=True)
class Settings:
    quiet_start: time = time(21, 0)
    quiet_end: time = time(9, 0)
    cap_messages: int = 3
    cap_days: int = 7
    max_attempts: int = 5
    backoff_minutes: int = 15
    lease_seconds: float = 600.0
    unsubscribe_url: str = "https://rewards.staypoint.example/unsubscribe?m={member}&c={channel}&t={token}"
    secret: str = "staypoint-dev-secret"
    winback_days: int = 180
    winback_catchup_days: int = 30
    expiring_days: int = 30


@dataclass(frozen=True)
class JobConfig:
    settings: Settings = field(default_factory=Settings)
    smtp: SmtpSettings | None = None
    sms_url: str | None = None
    campaigns: tuple[Campaign, ...] = ()


def _template(code: str, trigger: str, lang: str, raw: dict[str, Any]) -> Template:
    base = DEFAULTS[trigger].get(lang) or DEFAULTS[trigger]["en"]
    unknown = set(raw) - {"subject", "text", "sms", "html"}
    if unknown:
        raise ConfigError(f"campaign {code}: templates.{lang}: unknown keys {sorted(unknown)}")
    return Template(
        subject=str(raw.get("subject", base.subject)),
        text=str(raw.get("text", base.text)),
        sms=str(raw.get("sms", base.sms)),
        html=str(raw["html"]) if "html" in raw else base.html,
    )


def parse_config(text: str, source: str = "<campaigns>") -> JobConfig:
    """Parse and check a campaign configuration; errors name the campaign and field."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML ({exc})") from None
    s = dict(raw.get("settings", {}))
    for k in ("quiet_start", "quiet_end"):
        if k in s:
            s[k] = time.fromisoformat(str(s[k]))
    try:
        settings = Settings(**s)
    except TypeError as exc:
        raise ConfigError(f"{source}: [settings]: {exc}") from None
    smtp = SmtpSettings(**raw["smtp"]) if "smtp" in raw else None
    sms_url = str(raw["sms"]["url"]) if "sms" in raw else None
    campaigns: list[Campaign] = []
    for c in raw.get("campaign", []):
        c = dict(c)
        code, trigger = str(c.get("code", "")), str(c.get("trigger", ""))
        if not code or trigger not in TRIGGERS:
            raise ConfigError(f"{source}: campaign {code or '?'}: trigger is one of {', '.join(TRIGGERS)}")
        if any(x.code == code for x in campaigns):
            raise ConfigError(f"{source}: campaign {code} defined twice")
        langs = {k: _template(code, trigger, k, v) for k, v in dict(c.pop("templates", {})).items()}
        templates = {lang: langs.get(lang) or t for lang, t in DEFAULTS[trigger].items()} | langs
        for k in ("starts", "ends"):
            if k in c and not isinstance(c[k], date):
                c[k] = date.fromisoformat(str(c[k]))
        if "channels" in c:
            c["channels"] = tuple(c["channels"])
            if not set(c["channels"]) <= {"email", "sms"}:
                raise ConfigError(f"{source}: campaign {code}: channels are email and sms")
        if trigger == "one_off" and not c.get("segment"):
            raise ConfigError(f"{source}: campaign {code}: a one-off campaign names a segment")
        try:
            campaigns.append(Campaign(**c, templates=templates))
        except TypeError as exc:
            raise ConfigError(f"{source}: campaign {code}: {exc}") from None
    return JobConfig(settings, smtp, sms_url, tuple(campaigns))


def load_config(path: Path) -> JobConfig:
    return parse_config(path.read_text(encoding="utf-8"), str(path))


def with_default_templates(c: Campaign) -> Campaign:
    """``c`` with the shipped templates for any language it does not override."""
    if c.templates:
        return c
    from dataclasses import replace

    return replace(c, templates=dict(DEFAULTS[c.trigger]))
