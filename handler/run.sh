#!/bin/sh
# Handler of StreamingMode=lwa (template.yaml). The AWS Lambda Web Adapter layer's wrapper
# (AWS_LAMBDA_EXEC_WRAPPER=/opt/bootstrap) runs this script instead of Lambda's Python runtime,
# waits until GET $AWS_LWA_READINESS_CHECK_PATH answers on 127.0.0.1:$AWS_LWA_PORT, then turns
# each invocation into an HTTP request to uvicorn and streams the response back
# (AWS_LWA_INVOKE_MODE=response_stream, Function URL InvokeMode RESPONSE_STREAM).
#
# uvicorn comes from the artifact's lwa/ directory (handler/requirements-lwa.txt), which only
# this script puts on sys.path. HTTP parsing is h11 (pure Python, already a dependency of
# httpcore) and the loop is plain asyncio: one request at a time per Lambda instance, over
# loopback, so httptools/uvloop would buy microseconds for megabytes.
# --lifespan off: the app is built at import, as under Mangum. No access log: the router
# writes its own JSON line per request.
set -eu
cd "${LAMBDA_TASK_ROOT:-$(dirname "$0")}"
export PYTHONPATH="$PWD:$PWD/lwa${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python3}" -m uvicorn tier_router.asgi:app \
    --host 127.0.0.1 --port "${AWS_LWA_PORT:-8080}" \
    --lifespan off --http h11 --loop asyncio \
    --no-access-log --no-server-header --log-level warning \
    --timeout-keep-alive 60
