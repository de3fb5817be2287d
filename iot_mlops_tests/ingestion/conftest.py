"""The MQTT broker and fleet fixtures of test_mqtt.py, for the other MQTT test modules too."""

from iot_mlops_tests.ingestion.test_mqtt import broker, mqtt_fleet  # noqa: F401 - fixtures
