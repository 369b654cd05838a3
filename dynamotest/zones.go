// zones.go: simulated zones and a whole zone's outage while clients write (§4.6 replicas across data centers).
package dynamotest

import (
	"errors"
	"fmt"
	"time"
)

// ZoneOutage selects what happens to one zone of a run with SimConfig.Zones.
type ZoneOutage int

const (
	// ZoneOutageNone keeps every zone up.
	ZoneOutageNone ZoneOutage = iota
	// ZoneOutageCrash crashes every node of one zone, keeping their disks,
	// once the clients have run a third of SimConfig.Ops, and restarts them
	// at two thirds: hinted handoff and anti-entropy must then bring the
	// zone's replicas back.
	ZoneOutageCrash
	// ZoneOutageLoseDisks is ZoneOutageCrash with every node of the zone
	// coming back on an empty disk: the zone's replicas come back only from
	// the other zones.
	ZoneOutageLoseDisks
)

func (z ZoneOutage) String() string {
	switch z {
	case ZoneOutageNone:
		return "none"
	case ZoneOutageCrash:
		return "crash"
	case ZoneOutageLoseDisks:
		return "lose-disks"
	}
	return fmt.Sprintf("ZoneOutage(%d)", int(z))
}

// zoneState is the progress of a run's zone outage.
type zoneState struct {
	zone           string // the zone that goes down
	down, over     bool
	fromStep       int // first client step during the outage
	toStep         int // first client step after it
	downAt, backAt time.Duration
	hints          int // hints held for the zone's nodes when it returned
}

// validateZones reports the problems with a defaulted cfg's zone settings.
func (cfg SimConfig) validateZones() []error {
	var errs []error
	if cfg.Zones < 0 || cfg.Zones > cfg.Nodes {
		errs = append(errs, fmt.Errorf("Zones (%d) must be between 0 and Nodes (%d)", cfg.Zones, cfg.Nodes))
	}
	switch cfg.ZoneOutage {
	case ZoneOutageNone:
	case ZoneOutageCrash, ZoneOutageLoseDisks:
		if cfg.Zones < 2 {
			errs = append(errs, fmt.Errorf("ZoneOutage %v needs at least 2 Zones, not %d", cfg.ZoneOutage, cfg.Zones))
		}
		if cfg.Faults {
			errs = append(errs, errors.New("ZoneOutage runs without Faults: the nemesis would restart the zone's nodes"))
		}
	default:
		errs = append(errs, fmt.Errorf("ZoneOutage (%d) is unknown", int(cfg.ZoneOutage)))
	}
	return errs
}

// zoneName returns node i's zone: "z<i mod Zones>", or "" without zones.
func (s *sim) zoneName(i int) string {
	if s.cfg.Zones == 0 {
		return ""
	}
	return fmt.Sprintf("z%d", i%s.cfg.Zones)
}

// zoneStep runs the zone outage: it crashes the zone's nodes when done, the
// client operations run so far, reaches a third of SimConfig.Ops, and
// restarts them at two thirds. It runs before expire in each round of the
// step loop, and while the zone is down it renews its nodes' crash time so
// that expire, which restarts nodes a crash has held down for faultTTL,
// leaves them down.
func (s *sim) zoneStep(done int) {
	z := &s.zone
	if s.cfg.ZoneOutage == ZoneOutageNone || z.over {
		return
	}
	switch {
	case !z.down && done >= s.cfg.Ops/3:
		z.zone = s.zoneName(int(uint64(s.cfg.Seed) % uint64(s.cfg.Zones)))
		z.down, z.downAt, z.fromStep = true, s.now(), len(s.steps)
		for i, nd := range s.nodes {
			if s.zoneName(i) != z.zone {
				continue
			}
			s.stop(nd)
			if s.cfg.ZoneOutage == ZoneOutageLoseDisks {
				nd.amnesiac = true
			}
		}
		if s.cfg.ZoneOutage == ZoneOutageLoseDisks {
			s.amnesiaAt = append(s.amnesiaAt, s.now())
		}
		s.logf("zone outage: zone %s down (%v)", z.zone, s.cfg.ZoneOutage)
		s.decide("zone down " + z.zone)
	case z.down && done >= 2*s.cfg.Ops/3:
		z.down, z.over, z.backAt, z.toStep = false, true, s.now(), len(s.steps)
		for i, held := range s.nodes {
			if s.zoneName(i) == z.zone {
				for _, nd := range s.nodes {
					if nd.st != nil {
						z.hints += nd.st.Stats().Hints.Pending[held.id]
					}
				}
			}
		}
		for i, nd := range s.nodes {
			if s.zoneName(i) == z.zone && nd.st == nil {
				if err := s.restart(nd); err != nil {
					s.fail(fmt.Errorf("restart %s: %w", nd.id, err))
				}
			}
		}
		s.logf("zone outage: zone %s back", z.zone)
		s.decide("zone back " + z.zone)
	case z.down:
		for i, nd := range s.nodes {
			if s.zoneName(i) == z.zone {
				nd.downAt = s.now()
			}
		}
	}
}

// zoneReport fills rep's zone fields once the run is checked: the adds that
// ran while the zone was down, how many were acknowledged and the hints held
// for the zone when it returned, and a
// "zones" violation for a key whose replicas do not span min(N, Zones)
// zones.
func (s *sim) zoneReport(rep *Report) {
	if s.cfg.Zones == 0 {
		return
	}
	z := &s.zone
	rep.DownZone, rep.ZoneHints = z.zone, z.hints
	if z.down { // the workload ended first: heal brought the zone back
		z.toStep = len(s.steps)
	}
	for _, o := range s.ops {
		if z.zone != "" && (o.kind == opAdd || o.kind == opSetAdd || o.kind == opSetReAdd) && o.step >= z.fromStep && o.step < z.toStep {
			rep.ZoneDownAdds++
			if o.acked() {
				rep.ZoneDownAcked++
			}
		}
	}
	want := min(s.cfg.N, s.cfg.Zones)
	st := s.nodes[s.upNodes()[0]].st
	for k, key := range s.keys {
		zones := map[string]bool{}
		for _, m := range st.PreferenceList(key, s.cfg.N) {
			zones[m.Zone] = true
		}
		if len(zones) != want {
			rep.Violations = append(rep.Violations, fmt.Sprintf("zones: key %d's %d replicas span %d zones, want %d", k, s.cfg.N, len(zones), want))
		}
	}
}
