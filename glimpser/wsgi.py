"""The WSGI application object gunicorn serves."""

from glimpser import create_app

app = create_app()
