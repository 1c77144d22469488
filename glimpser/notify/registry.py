"""The one table of channel kinds: kind → the module that sends it.

Every module named here has the same shape:

- `Config`: its config schema (the class from glimpser.notify.schemas, the one schema per kind);
- `deliver(channel, event, delivery, settings, connection) -> SendResult`: one attempt for one
  delivery, as the dispatcher calls it (glimpser.notify.dispatch.Sender). Raises SendError.

"Send test" (Admin → Channels) needs nothing more: it raises a real test event and delivers it
through the same `deliver`. The modules are imported when first asked for, so importing this
table stays cheap (Apprise and pywebpush load slowly) and free of import cycles.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from glimpser.notify.schemas import KINDS

MODULES: dict[str, str] = {
    "webhook": "glimpser.notify.webhook",
    "webpush": "glimpser.notify.webpush",
    "pushover": "glimpser.notify.pushover",
    "email": "glimpser.notify.mail",
    "cap": "glimpser.notify.cap",
    "apprise": "glimpser.notify.apprise_sender",
}
assert set(MODULES) == set(KINDS)


def module_for(kind: str) -> ModuleType | None:
    """The module that sends channels of this kind; None for a kind Glimpser does not know."""
    name = MODULES.get(kind)
    return importlib.import_module(name) if name is not None else None
