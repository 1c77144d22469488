"""Flask extensions, created here and bound to the app in create_app()."""

from __future__ import annotations

from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_session import Session
from flask_wtf.csrf import CSRFProtect

csrf = CSRFProtect()
server_sessions = Session()
# No default limits: only the routes that ask (login) are limited.
limiter = Limiter(key_func=get_remote_address, default_limits=[])
