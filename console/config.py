"""Console settings, read once from the environment (and the gateway's base URL)."""

from collections.abc import Mapping
from dataclasses import dataclass

from weftcore.config import env_bool


@dataclass(frozen=True)
class ConsoleConfig:
    public_base_url: str
    secure_cookies: bool  # Secure cookies (and the __Host- prefix) when served over https

    @property
    def session_cookie(self) -> str:
        # __Host-: the browser refuses it from http, from a subdomain, or with a Domain.
        return "__Host-weft_session" if self.secure_cookies else "weft_session"

    @property
    def form_cookie(self) -> str:
        return "__Host-weft_form" if self.secure_cookies else "weft_form"

    @classmethod
    def from_env(
        cls, public_base_url: str, env: Mapping[str, str] | None = None
    ) -> "ConsoleConfig":
        # Default: Secure exactly when the public URL is https (behind a TLS proxy).
        https = public_base_url.startswith("https://")
        secure = env_bool("WEFT_CONSOLE_SECURE_COOKIES", https, env)
        return cls(public_base_url=public_base_url.rstrip("/"), secure_cookies=secure)
