package audit

// SetTestHookAfterCopy installs f to run between a slot's private copy and
// its seq re-check (nil removes it), so that tests can rewrite the slot
// exactly there.
func SetTestHookAfterCopy(f func()) { testHookAfterCopy = f }
