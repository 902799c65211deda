"""Over-the-air updates over MQTT: signed manifests, chunk serving, rollouts (docs/firmware.md)."""
