"""Training: the YOLO11 loss (task-aligned assignment, CIoU + DFL, BCE) and a small training routine."""
