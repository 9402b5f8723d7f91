"""Composition root: the function app and its blueprints, nothing else.

The settings are read here, at load: a malformed app setting stops the app at once with a
message naming it, instead of failing every request and poisoning every queue message.
"""

import logging

import azure.functions as func

from userexport.functions import http_api, nightly, sweeper, worker
from userexport.settings import Settings

settings = Settings.from_env()
# The Azure SDKs log every request at INFO: kept out of Application Insights, where traces are
# not sampled (host.json), so that the app's own lines (its events, its audit) all arrive.
logging.getLogger("azure").setLevel(logging.WARNING)

# A function key on every call, unless App Service authentication stands in front (settings.py).
app = func.FunctionApp(http_auth_level=func.AuthLevel(settings.http_auth_level))
app.register_functions(http_api.bp)
app.register_functions(worker.bp)
app.register_functions(nightly.bp)
app.register_functions(sweeper.bp)
