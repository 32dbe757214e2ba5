package webhookenv

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/podidentity/injector/test/fakeaad"
)

func TestCountIssued(t *testing.T) {
	reqs := []fakeaad.Request{
		{ClientID: "C-1", Grant: fakeaad.GrantAssertion, Status: 200},
		{ClientID: "c-1", Grant: fakeaad.GrantAssertion, Status: 400},
		{ClientID: "c-2", Grant: fakeaad.GrantAssertion, Status: 200},
		{ClientID: "c-1", Grant: fakeaad.GrantClientSecret, Status: 200},
	}
	assert.Equal(t, 1, CountIssued(reqs, fakeaad.GrantAssertion, "c-1"), "only issued tokens of that grant and client, case-insensitively")
}
