"""The one table of channel kinds: every kind has one module with its schema and its sender."""

from __future__ import annotations

import inspect

from glimpser.models import CHANNEL_KINDS
from glimpser.notify import registry
from glimpser.notify.schemas import CONFIG_BY_KIND


def test_every_kind_is_one_module_with_its_schema_and_sender():
    assert set(registry.MODULES) == set(CHANNEL_KINDS)
    for kind in CHANNEL_KINDS:
        module = registry.module_for(kind)
        assert module is not None
        assert module.Config is CONFIG_BY_KIND[kind]
        parameters = list(inspect.signature(module.deliver).parameters)
        assert parameters == ["channel", "event", "delivery", "settings", "connection"]


def test_an_unknown_kind_has_no_module():
    assert registry.module_for("carrier-pigeon") is None
