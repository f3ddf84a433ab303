package dbmanager

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/gatewaykit/dbmanager/internal/telemetry"
)

// observeReplicas registers the callback that reports rs's replicas:
// dbmanager.replica.in_rotation and dbmanager.replica.lag per replica,
// and dbmanager.replica.reads per replica and for the primary. It returns
// the registration to unregister when rs closes (nil if the meter refused).
func (t *instrumentation) observeReplicas(rs *replicaSet) metric.Registration {
	if t == nil || t.inst == nil {
		return nil
	}
	sets := make([]attribute.Set, len(rs.replicas))
	for i, r := range rs.replicas {
		sets[i] = attribute.NewSet(attribute.String(telemetry.AttrReplica, r.addr))
	}
	primary := attribute.NewSet(attribute.String(telemetry.AttrReplica, "primary"))
	in := t.inst
	reg, err := t.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for i, ri := range rs.infos() {
			v := int64(0)
			if ri.State == ReplicaInRotation {
				v = 1
			}
			o.ObserveInt64(in.ReplicaInRotation, v, metric.WithAttributeSet(sets[i]))
			o.ObserveFloat64(in.ReplicaLag, ri.Lag.Seconds(), metric.WithAttributeSet(sets[i]))
			o.ObserveInt64(in.ReplicaReads, int64(ri.Reads), metric.WithAttributeSet(sets[i]))
		}
		o.ObserveInt64(in.ReplicaReads, int64(rs.writerReads.Load()), metric.WithAttributeSet(primary))
		return nil
	}, in.ReplicaInRotation, in.ReplicaLag, in.ReplicaReads)
	if err != nil {
		otel.Handle(err)
		return nil
	}
	return reg
}
