"""Detections leaving the box (issue 15), against real brokers (mosquitto, redis-server): every MQTT message and
Redis stream entry is exactly a JSON Lines line, as are the tracks, YOLO labels and metrics of the same run; a broker
stopped and restarted mid-run loses no buffered record and stalls nothing; a full buffer drops the oldest records
and counts exactly those; wrong broker settings are one error before the model loads."""

import json
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import pytest

from brokers import free_port, mosquitto, redis_server, secured_mosquitto, serving
from clirun import rgbir
from media import write_folders
from rgbir.errors import RgbirError
from rgbir.runtime.config import SinkConfig
from rgbir.runtime.frames import Frame, FramePair
from rgbir.runtime.results import Detection, PairResult
from test_cli_errors import records

mqtt = pytest.importorskip("paho.mqtt.client", reason="the broker sinks need the fleet extra")
redis = pytest.importorskip("redis")
from rgbir.runtime.outputs.brokers import MqttSink, RedisSink, parse_address  # noqa: E402 (after the skip)


@pytest.fixture(scope="module")
def mqtt_broker(tmp_path_factory):
    yield from serving(mosquitto(tmp_path_factory.mktemp("mosquitto")))


@pytest.fixture(scope="module")
def redis_broker(tmp_path_factory):
    yield from serving(redis_server(tmp_path_factory.mktemp("redis")))


class Subscriber:
    """Keeps every payload of a topic at QoS 1 in a persistent session, so that messages published while it is away
    (the broker restarting) wait for it; it reconnects by itself."""

    def __init__(self, port: int, topic: str):
        self.messages: list[bytes] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{topic}", clean_session=False)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.subscribed.set()
        self.client.on_message = lambda c, u, message: self.messages.append(message.payload)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.subscribed.wait(5)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def entries(port: int, stream: str) -> list[bytes]:
    """The stream's records, oldest first."""
    return [fields[b"record"] for _, fields in redis.Redis(port=port).xrange(stream)]


def first_each(messages: list[bytes]) -> list[bytes]:
    """Messages in order without repeats (delivery is at least once across a broker loss)."""
    return list(dict.fromkeys(messages))


def scrape(port: int) -> dict[str, float]:
    """The metrics endpoint's samples by name and labels."""
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {s.name + json.dumps(s.labels, sort_keys=True): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    return write_folders(tmp_path_factory.mktemp("frames"), 12)


def test_every_output_of_a_run_carries_its_json_lines_records(tiny_onnx, frames, mqtt_broker, redis_broker, tmp_path):
    rgb, ir = frames
    subscriber = Subscriber(mqtt_broker.port, "rgbir/all")
    out, mot, labels = tmp_path / "pairs.jsonl", tmp_path / "tracks.txt", tmp_path / "labels"
    try:
        result = rgbir("run", "--model", tiny_onnx, "--rgb", rgb, "--ir", ir, "--stats-interval", "0", "--json", out,
                       "--mqtt", f"127.0.0.1:{mqtt_broker.port}/rgbir/all", "--mqtt-qos", "1",
                       "--redis", f"127.0.0.1:{redis_broker.port}/all", "--track", "bytetrack", "--mot", mot,
                       "--yolo-txt", labels)
        assert result.returncode == 0, result.stderr
        lines = out.read_bytes().splitlines()
        assert len(lines) == 12
        assert subscriber.wait_for(len(lines)) == lines  # the same bytes, in order, each once
        assert entries(redis_broker.port, "all") == lines
    finally:
        subscriber.close()
    written = records(out)
    tracked = sorted((r["rgb"]["seq"] + 1, d["track_id"]) for r in written for d in r["detections"] if d["track_id"])
    assert tracked and tracked == sorted(tuple(map(int, row.split(",")[:2])) for row in mot.read_text().splitlines())
    for r in written:  # one label file per pair, named after its image, a line per detection, normalised
        rows = np.loadtxt(labels / r["rgb"]["file"].replace(".jpg", ".txt"), ndmin=2).reshape(-1, 6)
        assert len(rows) == len(r["detections"]) and ((rows[:, 1:5] >= 0) & (rows[:, 1:5] <= 1)).all()
        assert rows[:, 5].tolist() == pytest.approx([d["score"] for d in r["detections"]], abs=1e-5)


def test_brokers_restarted_mid_run_lose_nothing_buffered_and_stall_nothing(tiny_onnx, mqtt_broker, redis_broker,
                                                                            tmp_path):
    rgb, ir = write_folders(tmp_path / "frames", 40)
    out, stats_file = tmp_path / "pairs.jsonl", tmp_path / "stats.json"
    subscriber = Subscriber(mqtt_broker.port, "rgbir/restart")
    metrics_port = free_port()
    mqtt_sink, redis_sink = f"127.0.0.1:{mqtt_broker.port}/rgbir/restart", f"127.0.0.1:{redis_broker.port}/restart"
    run = subprocess.Popen([sys.executable, "-m", "rgbir", "run", "--model", tiny_onnx, "--rgb", rgb, "--ir", ir,
                            "--stats-interval", "0", "--json", out, "--stats-json", stats_file, "--realtime", "--fps",
                            "10", "--mqtt", mqtt_sink, "--mqtt-qos", "1", "--redis", redis_sink, "--broker-flush",
                            "30", "--metrics", str(metrics_port)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while (not out.exists() or len(out.read_bytes().splitlines()) < 8) and time.monotonic() < deadline:
            time.sleep(0.05)
        live = scrape(metrics_port)  # while it runs, on the loopback address
        assert live['rgbir_pairs_total{"stream": "0"}'] >= 8 and live["rgbir_fps{}"] > 0
        mqtt_broker.stop()
        redis_broker.stop()
        time.sleep(1.0)  # ten frames' time without brokers
        mqtt_broker.start()
        redis_broker.start()
        _, stderr = run.communicate(timeout=60)
        ended = time.time()
        assert run.returncode == 0, stderr
        lines = out.read_bytes().splitlines()
        assert len(lines) == 40
        # no stall: the run ended soon after its last frame (about 1.5 s here, most of it the interpreter's exit),
        # not at the 30 s flush limit
        assert ended - json.loads(lines[-1])["rgb"]["time"] < 6.0, stderr
        counters = json.loads(stats_file.read_text())["counters"]
        for sink in (f"mqtt {mqtt_sink}", f"redis {redis_sink}"):
            assert counters.get(f"{sink}: reconnects", 0) >= 1 and f"{sink}: records dropped" not in counters, counters
        assert "broker lost" in stderr and "broker back" in stderr
        assert first_each(subscriber.wait_for(len(lines))) == lines
        assert first_each(entries(redis_broker.port, "restart")) == lines
    finally:
        run.kill()
        subscriber.close()


def result(index: int) -> PairResult:
    frame = Frame(np.zeros((4, 4), np.uint8), index, 0.0, 1.7e9 + index, "rgb")
    return PairResult(FramePair(0, frame, None, index), [Detection(0, "person", 0.9, [1.0, 2.0, 3.0, 4.0])])


def test_a_full_buffer_drops_the_oldest_records_counts_them_and_never_blocks(redis_broker):
    sink = RedisSink(f"127.0.0.1:{redis_broker.port}/overflow", capacity=5, flush_s=10.0)
    redis_broker.stop()
    start = time.perf_counter()
    for i in range(20):
        sink.write(result(i), None)
    assert time.perf_counter() - start < 0.5  # the broker is gone: writes only buffer
    time.sleep(0.3)  # the publisher tries, fails and backs off
    redis_broker.start()
    sink.close()
    assert entries(redis_broker.port, "overflow") == [result(i).json_line() for i in range(15, 20)]
    assert {c.event: c.value for c in sink.counts()} == {"records dropped": 15, "reconnects": 1}


def test_closing_with_the_broker_gone_waits_only_the_flush_limit_and_counts_what_is_lost(redis_broker):
    sink = RedisSink(f"127.0.0.1:{redis_broker.port}/gone", flush_s=0.5)
    redis_broker.stop()
    try:
        for i in range(3):
            sink.write(result(i), None)
        start = time.monotonic()
        sink.close()
        assert time.monotonic() - start < 3.0
        assert {c.event: c.value for c in sink.counts()}["records dropped"] == 3
    finally:
        redis_broker.start()


def test_mqtt_with_a_password_and_over_tls(tmp_path, monkeypatch):
    server, tls_port, ca = secured_mosquitto(tmp_path, "rgbir", "s3cret")
    server.start()
    try:
        (tmp_path / "wrong").write_text("guess\n")
        with pytest.raises(RgbirError, match="did not accept the connection .*check --mqtt-user"):
            MqttSink(f"127.0.0.1:{server.port}/t", user="rgbir", password_file=str(tmp_path / "wrong"))
        with pytest.raises(RgbirError, match="cannot connect to the MQTT broker .*--mqtt-tls"):
            MqttSink(f"127.0.0.1:{tls_port}/t", tls_ca=str(tmp_path / "server.pem"))  # not the CA that signed it
        monkeypatch.setenv("RGBIR_MQTT_PASSWORD", "s3cret")
        for sink in (MqttSink(f"127.0.0.1:{server.port}/t", qos=1, user="rgbir"),
                     MqttSink(f"127.0.0.1:{tls_port}/t", qos=1, tls_ca=str(ca))):
            for i in range(3):
                sink.write(result(i), None)
            sink.close()
            assert sink.acked == 3 and sink.dropped == 0  # the broker acknowledged each record
    finally:
        server.stop()


def test_broker_settings_are_checked_before_the_model_loads(redis_broker):
    assert parse_address("broker.local/a/b", "--mqtt", 1883, "TOPIC") == ("broker.local", 1883, "a/b")
    for wrong in ("127.0.0.1:1883", "127.0.0.1:99999/t", "/t"):
        with pytest.raises(RgbirError, match="give HOST"):
            SinkConfig(mqtt=wrong).validate()
    with pytest.raises(RgbirError, match="wildcards"):
        SinkConfig(mqtt="127.0.0.1/rgbir/#").validate()
    with pytest.raises(RgbirError, match="cannot reach the Redis server at 127.0.0.1:.*check --redis"):
        SinkConfig(redis=f"127.0.0.1:{free_port()}/s").validate()
    with pytest.raises(RgbirError, match="MQTT password file"):
        SinkConfig(mqtt="127.0.0.1/t", mqtt_user="u", mqtt_password_file="/nonexistent/password").validate()
    with pytest.raises(RgbirError, match="--mqtt-password-file configures the MQTT sink, and there is no --mqtt"):
        SinkConfig(mqtt_password_file="/nonexistent/password").validate()
    SinkConfig(redis=f"127.0.0.1:{redis_broker.port}/s").validate()
