"""Admin → Vision AI: whether AI is configured, and the tokens each stream used (AICall rows)."""

from __future__ import annotations

from datetime import timedelta

from glimpser import times
from glimpser.db import database
from glimpser.models import AICall, Stream
from tests.helpers import setup_admin


def test_admin_page_says_plainly_when_ai_is_not_configured(app):
    client = app.test_client()
    setup_admin(client)
    html = client.get("/admin/").get_data(as_text=True)
    assert "AI not configured." in html
    assert "No AI calls in the last 24 hours." in html


def test_admin_page_shows_model_and_usage_per_stream_but_never_the_key(app_factory):
    app = app_factory(
        GLIMPSER_AI_BASE_URL="http://127.0.0.1:9/v1",
        GLIMPSER_AI_MODEL="llava-test",
        GLIMPSER_AI_API_KEY="sk-very-secret-key",
    )
    client = app.test_client()
    setup_admin(client)
    with database.connection_context():
        gate = Stream.create(name="Gate", kind="rtsp", config={})
        AICall.create(stream=gate, purpose="describe", total_tokens=1200)
        AICall.create(stream=gate, purpose="describe", cached=True)
        AICall.create(stream=gate, purpose="rule", ok=False, error="the AI server answered 500")
        old = times.utcnow() - timedelta(days=2)
        AICall.create(stream=gate, purpose="describe", total_tokens=99999, at=old)
        AICall.create(stream=None, purpose="summary", total_tokens=300)
    html = client.get("/admin/").get_data(as_text=True)
    assert "llava-test" in html and "127.0.0.1:9" in html
    assert "sk-very-secret-key" not in html
    row = html[html.index("<td>Gate</td>") :].split("</tr>")[0]
    cells = [c.split("</td>")[0] for c in row.split("<td>")[1:]]
    assert cells == ["Gate", "3", "1", "1", "1,200", "the AI server answered 500"]
    assert "<td>all streams</td>" in html
