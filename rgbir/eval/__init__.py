"""Detection accuracy: COCO-style mAP over a paired dataset, for any backend."""
