import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "telerad.settings")
django_application = get_asgi_application()

from telerad.core.body_limit import RequestBodyLimit  # noqa: E402 - needs the settings above

application = RequestBodyLimit(django_application)
