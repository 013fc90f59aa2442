"""What the hub loads to log people in: course launches from an LMS (LTI 1.3 and 1.1)."""
