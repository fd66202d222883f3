"""End-to-end tests: a real ``telerad serve`` against real DICOM peers."""
