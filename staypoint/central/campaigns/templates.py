"""Message templates per language (en, zh at least) rendered with the member's fields.

Templates are Jinja2 in a sandbox (head-office staff write them; a template must not
reach into Python), with ``StrictUndefined`` so a misspelt field fails the preview
rather than sending "Dear ," to a million guests. HTML bodies are autoescaped.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
_HTML_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=True)


@dataclass(frozen=True)
class Template:
    """One language's version of a campaign's message."""

    subject: str
    text: str
    sms: str
    html: str | None = None


def _t(subject: str, text: str, sms: str) -> Template:
    return Template(subject, text, sms)


_FOOT_EN = (
    "\n\nMember {{ member }} · {{ tier_name }} · {{ '{:,}'.format(points) }} points"
    "\nUnsubscribe: {{ unsubscribe_url }}\n"
)
_FOOT_ZH = (
    "\n\n会员号 {{ member }} · {{ tier_name }} · 积分 {{ '{:,}'.format(points) }}"
    "\n退订：{{ unsubscribe_url }}\n"
)

# Shipped defaults per trigger; a campaign may override any of them.
DEFAULTS: dict[str, dict[str, Template]] = {
    "birthday": {
        "en": _t(
            "Happy birthday, {{ first_name }}!",
            "Dear {{ first_name }},\n\nHappy birthday from all of us at {{ programme }}."
            "{% if bonus_points %} We have added {{ bonus_points }} points to your account.{% endif %}"
            "{% if offer %}\n\nA suggestion for you: {{ offer }}.{% endif %}" + _FOOT_EN,
            "Happy birthday {{ first_name }}!{% if bonus_points %} +{{ bonus_points }} pts{% endif %}"
            " - {{ programme }}. STOP to opt out",
        ),
        "zh": _t(
            "{{ name }}，生日快乐！",
            "亲爱的{{ name }}：\n\n{{ programme }}全体同仁祝您生日快乐。"
            "{% if bonus_points %}我们已为您的账户添加 {{ bonus_points }} 积分。{% endif %}"
            "{% if offer %}\n\n为您推荐：{{ offer }}。{% endif %}" + _FOOT_ZH,
            "{{ name }}，生日快乐！{% if bonus_points %}赠送{{ bonus_points }}积分。{% endif %}回复TD退订",
        ),
    },
    "anniversary": {
        "en": _t(
            "{{ years }} year{{ 's' if years != 1 else '' }} with {{ programme }}",
            "Dear {{ first_name }},\n\nThank you for {{ years }} year{{ 's' if years != 1 else '' }} as a "
            "member."
            "{% if bonus_points %} {{ bonus_points }} bonus points are in your account.{% endif %}"
            + _FOOT_EN,
            "{{ years }} years with {{ programme }} - thank you, {{ first_name }}! STOP to opt out",
        ),
        "zh": _t(
            "感谢您加入{{ programme }} {{ years }} 周年",
            "亲爱的{{ name }}：\n\n感谢您成为我们的会员已满 {{ years }} 年。"
            "{% if bonus_points %}{{ bonus_points }} 奖励积分已存入您的账户。{% endif %}" + _FOOT_ZH,
            "{{ name }}，感谢您陪伴{{ programme }} {{ years }} 年！回复TD退订",
        ),
    },
    "tier_upgrade": {
        "en": _t(
            "Welcome to {{ tier_name }}, {{ first_name }}",
            "Dear {{ first_name }},\n\nYou are now {{ tier_name }}. Enjoy your new benefits." + _FOOT_EN,
            "You are now {{ tier_name }} at {{ programme }}. STOP to opt out",
        ),
        "zh": _t(
            "恭喜升级为{{ tier_name }}会员",
            "亲爱的{{ name }}：\n\n恭喜您升级为{{ tier_name }}会员，尽享全新礼遇。" + _FOOT_ZH,
            "恭喜升级为{{ tier_name }}会员！回复TD退订",
        ),
    },
    "nth_stay": {
        "en": _t(
            "Your stay number {{ nth }} with us",
            "Dear {{ first_name }},\n\nThat was stay number {{ nth }}: thank you."
            "{% if offer %}\n\nNext time, perhaps {{ offer }}?{% endif %}" + _FOOT_EN,
            "Stay no. {{ nth }} - thank you {{ first_name }}! STOP to opt out",
        ),
        "zh": _t(
            "感谢您第 {{ nth }} 次入住",
            "亲爱的{{ name }}：\n\n感谢您第 {{ nth }} 次入住。"
            "{% if offer %}\n\n下次不妨试试：{{ offer }}。{% endif %}" + _FOOT_ZH,
            "感谢第{{ nth }}次入住！回复TD退订",
        ),
    },
    "points_expiring": {
        "en": _t(
            "{{ '{:,}'.format(points) }} points expire on {{ expiry_date }}",
            "Dear {{ first_name }},\n\nYour {{ '{:,}'.format(points) }} points expire on {{ expiry_date }}."
            " Any stay or redemption keeps them." + _FOOT_EN,
            "{{ '{:,}'.format(points) }} pts expire {{ expiry_date }}. STOP to opt out",
        ),
        "zh": _t(
            "您的 {{ points }} 积分将于 {{ expiry_date }} 过期",
            "亲爱的{{ name }}：\n\n您的 {{ points }} 积分将于 {{ expiry_date }} 过期，入住或兑换即可保留。"
            + _FOOT_ZH,
            "您的{{ points }}积分将于{{ expiry_date }}过期。回复TD退订",
        ),
    },
    "win_back": {
        "en": _t(
            "We miss you, {{ first_name }}",
            "Dear {{ first_name }},\n\nIt has been a while since your last stay on {{ last_stay }}."
            "{% if offer %} How about {{ offer }}?{% endif %}" + _FOOT_EN,
            "We miss you {{ first_name }} - {{ programme }}. STOP to opt out",
        ),
        "zh": _t(
            "{{ name }}，好久不见",
            "亲爱的{{ name }}：\n\n自 {{ last_stay }} 您上次入住以来，我们一直期待再次欢迎您。"
            "{% if offer %}为您推荐：{{ offer }}。{% endif %}" + _FOOT_ZH,
            "{{ name }}，好久不见！回复TD退订",
        ),
    },
    "one_off": {
        "en": _t(
            "News from {{ programme }}",
            "Dear {{ first_name }},\n\nWe have something for you." + _FOOT_EN,
            "News from {{ programme }}. STOP to opt out",
        ),
        "zh": _t(
            "来自{{ programme }}的消息",
            "亲爱的{{ name }}：\n\n我们为您准备了一份惊喜。" + _FOOT_ZH,
            "来自{{ programme }}的消息。回复TD退订",
        ),
    },
}


@functools.lru_cache(maxsize=512)
def _compiled(source: str, html: bool) -> Any:
    """A template compiled once per run, not once per message (compiling is most of the cost)."""
    return (_HTML_ENV if html else _ENV).from_string(source)


def _html_from_text(text: str) -> str:
    """A minimal HTML alternative from the text part (escaped, paragraphs kept)."""
    body = _compiled(
        "{% for p in paras %}<p>{% for line in p %}{{ line }}{% if not loop.last %}<br>{% endif %}"
        "{% endfor %}</p>{% endfor %}",
        True,
    ).render(paras=[p.split("\n") for p in text.strip().split("\n\n")])
    return f'<!doctype html><html><body style="font-family:sans-serif">{body}</body></html>'


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str
    sms: str


def render(template: Template, fields: Mapping[str, Any]) -> Rendered:
    """Render one template with the member's fields (raises on a missing field)."""
    subject = _compiled(template.subject, False).render(**fields).strip()
    text = _compiled(template.text, False).render(**fields)
    html = _compiled(template.html, True).render(**fields) if template.html else _html_from_text(text)
    sms = _compiled(template.sms, False).render(**fields).strip()
    return Rendered(subject, text, html, sms)


def pick(templates: Mapping[str, Template], language: str) -> Template:
    """The member's language, else English (every campaign has English)."""
    return templates.get(language) or templates["en"]
