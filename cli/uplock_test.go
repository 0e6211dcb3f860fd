package cli

import (
	"fmt"
	"os"
	"testing"

	"github.com/fdp-engine/fdp/shm"
	"github.com/stretchr/testify/require"
)

// TestLockInstance: the instance lock is exclusive and names its owner; an
// engine of the instance that is live without the lock (a world segment
// whose creator runs) is refused with its pid; release frees the lock and
// removes the file, and a stand-alone engine takes the lock as "run".
func TestLockInstance(t *testing.T) {
	useTempShm(t)
	inst := uniqueInstance()
	release, err := lockInstance(inst, ownerUp)
	require.NoError(t, err)
	role, pid := readOwner(lockPath(inst))
	require.Equal(t, ownerUp, role)
	require.Equal(t, os.Getpid(), pid)
	require.True(t, lockHeld(lockPath(inst)))
	// flock is per open file description: a second lock in this process
	// conflicts like another process's would.
	_, err = lockInstance(inst, ownerUp)
	require.ErrorIs(t, err, errInstanceLive)
	require.EqualError(t, err, fmt.Sprintf("%v: another `engine up` supervises instance %q (pid %d)", errInstanceLive, inst, os.Getpid()))
	_, err = claimEngine(inst) // our parent is not the holder
	require.ErrorIs(t, err, errInstanceLive)
	release()
	require.NoFileExists(t, lockPath(inst))
	require.False(t, lockHeld(lockPath(inst)))

	release, err = claimEngine(inst)
	require.NoError(t, err)
	role, _ = readOwner(lockPath(inst))
	require.Equal(t, ownerRun, role)
	_, err = lockInstance(inst, ownerUp)
	require.EqualError(t, err, fmt.Sprintf("%v: an `engine run` of instance %q is running (pid %d)", errInstanceLive, inst, os.Getpid()))
	release()

	createWorldSegment(t, engineHeader(inst, shm.SelfStartTime()), 0)
	_, err = lockInstance(inst, ownerUp)
	require.EqualError(t, err, fmt.Sprintf("%v: an engine of instance %q is running (pid %d)", errInstanceLive, inst, os.Getpid()))
	require.NoFileExists(t, lockPath(inst), "a refused locker leaves no lock file")
}
