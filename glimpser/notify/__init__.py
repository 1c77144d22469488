"""Notifications: channels, the message every channel sends, the senders and the dispatcher.

- registry.py  the one table: channel kind → the module that sends it.
- one module per kind, each with `Config` (its schema) and `deliver(channel, event, delivery,
  settings, connection)`, one attempt: webhook.py, webpush.py, pushover.py, mail.py (email),
  cap.py (CAP 1.2: messages, the feed's XML and the POST), apprise_sender.py.
- schemas.py   one config schema per channel kind, ChannelSpec, parse_config / dump_config.
- message.py   Message / message_for(event, settings, storage): what is said about an event.
- senders.py   what the senders share: SendContext, the SSRF guard for targets, failures.
- dispatch.py, breaker.py: routing, retries, at-most-once delivery and circuit breakers.

Nothing is imported here, so importing a submodule stays cheap and free of import cycles.
"""
