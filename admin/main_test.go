// main_test.go: the admin tests' entry point: no goroutine may outlive them.
package admin_test

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
