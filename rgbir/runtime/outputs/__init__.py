"""Everything that leaves the box: sinks (JSON Lines, video, window, MJPEG), message brokers (MQTT, Redis),
Prometheus metrics, tracking, standard result files (YOLO labels, MOT) and the side-by-side drawing."""
