"""Storage service settings (S3, caps, extraction limits), read once from the environment."""

from collections.abc import Mapping
from dataclasses import dataclass

from weftcore.config import ConfigError, env_bool, env_float, env_int, env_str

MIB = 1024 * 1024


@dataclass(frozen=True)
class StorageConfig:
    s3_endpoint: str  # host:port, as the minio SDK wants it
    s3_access_key: str
    s3_secret_key: str
    s3_bucket: str
    s3_secure: bool
    s3_region: str
    max_upload_bytes: int
    max_table_upload_bytes: int
    extraction_timeout_seconds: float
    extraction_memory_bytes: int  # address-space cap of the extraction child process
    extraction_workers: int  # extractions at once, each in its own child process
    extraction_per_account: int  # of those, how many one account's files may hold
    extraction_queue_seconds: float  # a file's wait for a slot before it is `failed`
    max_text_chars: int  # extracted text kept per attachment
    max_rows: int  # CSV/XLSX rows read
    max_json_depth: int
    max_zip_bytes: int  # total uncompressed size allowed inside a DOCX/XLSX
    max_zip_ratio: int  # per-member compression ratio allowed inside a DOCX/XLSX

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "StorageConfig":
        endpoint = env_str("WEFT_S3_ENDPOINT", None, env)
        # Accept a URL too; the SDK wants host:port and a separate `secure` flag.
        secure_default = endpoint.startswith("https://")
        endpoint = endpoint.removeprefix("http://").removeprefix("https://").rstrip("/")
        config = cls(
            s3_endpoint=endpoint,
            s3_access_key=env_str("WEFT_S3_ACCESS_KEY", None, env),
            s3_secret_key=env_str("WEFT_S3_SECRET_KEY", None, env),
            s3_bucket=env_str("WEFT_S3_BUCKET", "weft-attachments", env),
            s3_secure=env_bool("WEFT_S3_SECURE", secure_default, env),
            s3_region=env_str("WEFT_S3_REGION", "us-east-1", env),
            max_upload_bytes=env_int("WEFT_MAX_UPLOAD_BYTES", 50 * MIB, env),
            max_table_upload_bytes=env_int("WEFT_MAX_TABLE_UPLOAD_BYTES", 20 * MIB, env),
            extraction_timeout_seconds=env_float("WEFT_EXTRACTION_TIMEOUT_SECONDS", 20.0, env),
            extraction_memory_bytes=env_int("WEFT_EXTRACTION_MEMORY_BYTES", 1024 * MIB, env),
            extraction_workers=env_int("WEFT_EXTRACTION_WORKERS", 4, env),
            extraction_per_account=env_int("WEFT_EXTRACTION_PER_ACCOUNT", 2, env),
            extraction_queue_seconds=env_float("WEFT_EXTRACTION_QUEUE_SECONDS", 60.0, env),
            max_text_chars=env_int("WEFT_MAX_EXTRACTED_CHARS", 2_000_000, env),
            max_rows=env_int("WEFT_EXTRACTION_MAX_ROWS", 5000, env),
            max_json_depth=env_int("WEFT_EXTRACTION_MAX_JSON_DEPTH", 64, env),
            max_zip_bytes=env_int("WEFT_EXTRACTION_MAX_ZIP_BYTES", 200 * MIB, env),
            max_zip_ratio=env_int("WEFT_EXTRACTION_MAX_ZIP_RATIO", 200, env),
        )
        for name in ("max_upload_bytes", "max_table_upload_bytes", "max_text_chars", "max_rows"):
            if getattr(config, name) <= 0:
                raise ConfigError(f"{name} must be positive")
        if config.extraction_timeout_seconds <= 0:
            raise ConfigError("WEFT_EXTRACTION_TIMEOUT_SECONDS must be positive")
        if config.extraction_workers < 1:
            raise ConfigError("WEFT_EXTRACTION_WORKERS must be positive")
        if not 1 <= config.extraction_per_account <= config.extraction_workers:
            raise ConfigError(
                "WEFT_EXTRACTION_PER_ACCOUNT must be between 1 and WEFT_EXTRACTION_WORKERS"
            )
        if config.extraction_queue_seconds <= 0:
            raise ConfigError("WEFT_EXTRACTION_QUEUE_SECONDS must be positive")
        return config
