# Slim image running `dxapi serve`. Configure with DXAPI_* environment variables (docs/settings.md).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY dxapi ./dxapi
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --create-home --home-dir /home/dxapi dxapi
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER dxapi
# A directory the user may write: `dxapi demo` builds demo-data/ here (`docker run -p 8000:8000 IMAGE dxapi demo`).
WORKDIR /home/dxapi
ENV DXAPI_HOST=0.0.0.0 DXAPI_PORT=8000
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8000/health/live')" || exit 1
CMD ["dxapi", "serve"]
