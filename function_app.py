"""Composition root: the function app and its blueprints, nothing else."""

import azure.functions as func

from userexport.functions import http_api, nightly, worker

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(http_api.bp)
app.register_functions(worker.bp)
app.register_functions(nightly.bp)
