# The Stampede service image: `stampede serve` against the Redis/Valkey and
# PostgreSQL that docker-compose.yml starts beside it (or any given by URL).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md LICENSE constraints.txt ./
COPY stampede ./stampede
RUN pip install --no-cache-dir -c constraints.txt . && useradd --system --home /app stampede \
    && mkdir -p /app/var && chown stampede /app/var
USER stampede
ENV STAMPEDE_DATA_DIR=/app/var
EXPOSE 8000 8001
# Listen on every interface inside the container; publish the ports with care.
CMD ["stampede", "serve", "--host", "0.0.0.0", "--workers", "2"]
