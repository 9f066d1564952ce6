"""Mask and annotation formats: RLE, SA-1B, COCO, PNG + CSV, YOLO."""
