"""The Raspberry Pi half of serkit: numpy features, the int8 runtime, the MQTT agent.

Everything under edge/ runs with the edge install alone (numpy, paho-mqtt, a
TFLite runtime) and imports nothing from trainer/ or convert/.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("serkit")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
