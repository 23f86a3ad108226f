"""Writing files so that a reader never sees a half-written one."""
