import uvicorn

from api.app import create_app
from wiring.logs import configure_logging
from wiring.settings import get_settings

settings = get_settings()
configure_logging(settings.log_format, settings.log_level)
uvicorn.run(
    create_app(settings),
    host=settings.api_host,
    port=settings.api_port,
    log_config=None,
    access_log=False,
    timeout_graceful_shutdown=5,
)
