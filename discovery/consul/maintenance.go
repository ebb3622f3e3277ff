package consul

import (
	"context"
	"fmt"
	"strings"

	"github.com/hashicorp/consul/api"
)

// MaintenancePrefix starts the reason (the maintenance check's Notes) of a
// maintenance mode that Outrider enabled to drain a sidecar. A maintenance
// mode with any other reason was enabled by someone else (an operator, a
// deploy script) and Outrider never lifts it.
const MaintenancePrefix = "outrider: draining"

// MaintenanceReason is the reason Outrider gives for the maintenance mode of
// the sidecar process pid that is draining.
func MaintenanceReason(pid int) string {
	return fmt.Sprintf("%s (pid %d)", MaintenancePrefix, pid)
}

// EnterMaintenance puts the agent's service serviceID in maintenance mode
// with reason: the agent adds a critical check, so health queries (and the
// watches of every peer) drop the instance at once. An instance already in
// maintenance keeps its check and its reason (the agent does not replace
// it), so an operator's maintenance stays the operator's. It returns once
// the agent answered or ctx is done.
func EnterMaintenance(ctx context.Context, client *api.Client, serviceID, reason string) error {
	q := (&api.QueryOptions{}).WithContext(ctx)
	if err := client.Agent().EnableServiceMaintenanceOpts(serviceID, reason, q); err != nil {
		return fmt.Errorf("consul: enabling maintenance mode of %q: %w", serviceID, err)
	}
	return nil
}

// LiftMaintenance ends the maintenance mode of the agent's service
// serviceID if Outrider enabled it (its reason starts with
// MaintenancePrefix). It returns the reason of the maintenance mode found
// ("" when the service is not in maintenance) and whether it was lifted: a
// maintenance mode someone else enabled is left alone (lifted false, nil
// error). It returns once the agent answered or ctx is done.
//
// The check is read, then removed: a maintenance mode enabled by someone
// else in between is lost only if it came after Outrider's own, and the
// agent ignores such a request anyway (see EnterMaintenance).
func LiftMaintenance(ctx context.Context, client *api.Client, serviceID string) (reason string, lifted bool, err error) {
	q := (&api.QueryOptions{}).WithContext(ctx)
	id := api.ServiceMaintPrefix + serviceID
	checks, err := client.Agent().ChecksWithFilterOpts(fmt.Sprintf("CheckID == %q", id), q)
	if err != nil {
		return "", false, fmt.Errorf("consul: reading the maintenance mode of %q: %w", serviceID, err)
	}
	c, ok := checks[id]
	if !ok {
		return "", false, nil
	}
	if !strings.HasPrefix(c.Notes, MaintenancePrefix) {
		return c.Notes, false, nil
	}
	if err := client.Agent().DisableServiceMaintenanceOpts(serviceID, q); err != nil {
		return c.Notes, false, fmt.Errorf("consul: lifting the maintenance mode of %q: %w", serviceID, err)
	}
	return c.Notes, true, nil
}
