"""Notifications: channels, the message every channel sends, the senders and the dispatcher.

- message.py   Message / message_for(event, settings, storage): what is said about an event.
- schemas.py   one config schema per channel kind, ChannelSpec, parse_config / dump_config.
- senders.py   SendContext, the SSRF guard for targets, send(config, message, ctx) and an
               adapter to the dispatcher's Sender signature (channel_sender).
- webhook.py, pushover.py, mail.py, apprise_sender.py: one attempt each.
- webpush.py, CAP, dispatch.py, breaker.py: Web Push, CAP 1.2, retries and circuit breakers.

Nothing is imported here, so importing a submodule stays cheap and free of import cycles.
"""
