from appliance.config.loader import config_hash, json_schema, load_board_profile, load_config
from appliance.config.schema import ApplianceConfig, BoardProfile, SiteConfig

__all__ = [
    "ApplianceConfig",
    "BoardProfile",
    "SiteConfig",
    "config_hash",
    "json_schema",
    "load_board_profile",
    "load_config",
]
