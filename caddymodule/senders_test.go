package caddymodule

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-capi/caddy-capi/capi/event"
	"github.com/caddy-capi/caddy-capi/capi/platform"
)

// sinkLine is the part of a sink file's line the tests read.
type sinkLine struct {
	Platform string          `json:"platform"`
	URL      string          `json:"url"`
	Body     json.RawMessage `json:"body"`
}

// readSink returns the lines recorded in path so far.
func readSink(t *testing.T, path string) []sinkLine {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []sinkLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var l sinkLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("sink line %q: %v", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	return lines
}

// waitSink waits until a line of the sink file for platformName mentions eventID.
func waitSink(t *testing.T, path, platformName, eventID string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, l := range readSink(t, path) {
			if l.Platform == platformName && strings.Contains(string(l.Body), eventID) {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("event %s never reached %s in sink %s: %v", eventID, platformName, path, readSink(t, path))
}

func sinkHas(t *testing.T, path, eventID string) bool {
	t.Helper()
	for _, l := range readSink(t, path) {
		if strings.Contains(string(l.Body), eventID) {
			return true
		}
	}
	return false
}

func testEvent(id string) event.Event {
	return event.Event{
		Name: "Purchase", ID: id, Time: time.Now(), ActionSource: event.ActionSystemGenerated,
		Value: "10.00", Currency: "USD",
		User: event.User{ExternalID: strings.Repeat("a", 64)},
	}
}

// withSink configures Meta and TikTok recording to a sink file, with a short flush.
func withSink(sinkPath string) func(*App) {
	return func(a *App) {
		a.Sink = &SinkConfig{Type: "file", Path: sinkPath}
		a.Meta = &MetaConfig{PixelID: "1234567890", AccessToken: "meta-secret-token"}
		a.TikTok = &TikTokConfig{PixelCode: "C4ABCDEFGH12", AccessToken: "tiktok-secret-token"}
		a.Delivery = &DeliveryConfig{Flush: caddy.Duration(20 * time.Millisecond)}
	}
}

func TestEnqueuedBeforeStartIsDeliveredAfterIt(t *testing.T) {
	dir := t.TempDir()
	sinkPath := filepath.Join(dir, "events.jsonl")
	a := provisioned(t, filepath.Join(dir, "capi.db"), withSink(sinkPath))
	defer a.Cleanup()

	// The http app may serve a conversion before the capi app has started.
	done := make(chan error, 1)
	go func() {
		_, err := a.storage.enqueueEdge(context.Background(), []string{platform.Meta, platform.TikTok}, testEvent("early-1"))
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	defer a.Stop()
	if err := <-done; err != nil {
		t.Fatalf("enqueue before start: %v", err)
	}
	waitSink(t, sinkPath, platform.Meta, "early-1")
	waitSink(t, sinkPath, platform.TikTok, "early-1")

	raw, err := os.ReadFile(sinkPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"meta-secret-token", "tiktok-secret-token", sinkCredential} {
		if strings.Contains(string(raw), secret) {
			t.Errorf("the sink file holds the credential %q", secret)
		}
	}
}

func TestReloadSwapsSendersWithoutReopening(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "capi.db")
	oldSink, newSink := filepath.Join(dir, "old.jsonl"), filepath.Join(dir, "new.jsonl")

	old := provisioned(t, path, withSink(oldSink))
	if err := old.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := old.storage.enqueueEdge(context.Background(), []string{platform.Meta}, testEvent("before-reload")); err != nil {
		t.Fatal(err)
	}
	waitSink(t, oldSink, platform.Meta, "before-reload")
	engine := old.storage.deliveryEngine()

	next := provisioned(t, path, withSink(newSink))
	withDeadline(t, func() {
		if err := next.Start(); err != nil {
			t.Error(err)
		}
		old.Stop()
		old.Cleanup()
	})
	defer func() { next.Stop(); next.Cleanup() }()
	if next.storage.deliveryEngine() != engine {
		t.Fatal("the reload replaced the delivery engine instead of swapping its senders")
	}
	if n, _ := sinks.References(oldSink); n != 0 {
		t.Errorf("the old config's sink file is still held by %d configs", n)
	}

	if _, err := next.storage.enqueueEdge(context.Background(), []string{platform.Meta}, testEvent("after-reload")); err != nil {
		t.Fatal(err)
	}
	waitSink(t, newSink, platform.Meta, "after-reload")
	if sinkHas(t, oldSink, "after-reload") {
		t.Error("an event enqueued after the reload went through the old config's senders")
	}
	stats, err := engine.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if w := stats[platform.Meta].Workers; w != 1 {
		t.Errorf("meta has %d workers after the reload, want 1", w)
	}
}

func TestSinkFileSharedAcrossReloads(t *testing.T) {
	dir := t.TempDir()
	path, sinkPath := filepath.Join(dir, "capi.db"), filepath.Join(dir, "events.jsonl")
	old := provisioned(t, path, withSink(sinkPath))
	if err := old.Start(); err != nil {
		t.Fatal(err)
	}
	next := provisioned(t, path, withSink(sinkPath))
	if err := next.Start(); err != nil {
		t.Fatal(err)
	}
	if n, _ := sinks.References(sinkPath); n != 2 {
		t.Fatalf("sink references during the reload = %d, want 2 on one file", n)
	}
	old.Stop()
	old.Cleanup()
	if _, err := next.storage.enqueueEdge(context.Background(), []string{platform.Meta}, testEvent("shared-sink")); err != nil {
		t.Fatal(err)
	}
	waitSink(t, sinkPath, platform.Meta, "shared-sink")
	next.Stop()
	next.Cleanup()
	if n, _ := sinks.References(sinkPath); n != 0 {
		t.Fatalf("the last cleanup left %d references on the sink file", n)
	}
}

// TestFailedReloadPutsBackTheRunningSenders: the new config started, a sibling app failed, so the
// old config keeps running, with its own senders.
func TestFailedReloadPutsBackTheRunningSenders(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "capi.db")
	oldSink, failedSink := filepath.Join(dir, "old.jsonl"), filepath.Join(dir, "failed.jsonl")
	old := provisioned(t, path, withSink(oldSink))
	if err := old.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { old.Stop(); old.Cleanup() }()

	failed := provisioned(t, path, withSink(failedSink))
	if err := failed.Start(); err != nil {
		t.Fatal(err)
	}
	failed.Stop()
	failed.Cleanup()

	if _, err := old.storage.enqueueEdge(context.Background(), []string{platform.Meta}, testEvent("after-failed-reload")); err != nil {
		t.Fatal(err)
	}
	waitSink(t, oldSink, platform.Meta, "after-failed-reload")
	if sinkHas(t, failedSink, "after-failed-reload") {
		t.Error("the failed config's senders are still installed")
	}
}

// TestShutdownLeavesUndeliveredEventsQueued: events the platform has not taken yet stay on disk
// through the last cleanup and go out after a restart.
func TestShutdownLeavesUndeliveredEventsQueued(t *testing.T) {
	dir := t.TempDir()
	path, sinkPath := filepath.Join(dir, "capi.db"), filepath.Join(dir, "events.jsonl")
	held := provisioned(t, path, func(a *App) { withSink(sinkPath)(a); a.holdDelivery = true })
	if err := held.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := held.storage.enqueueEdge(context.Background(), []string{platform.Meta}, testEvent("survives-shutdown")); err != nil {
		t.Fatal(err)
	}
	withDeadline(t, func() { held.Stop(); held.Cleanup() })
	if sinkHas(t, sinkPath, "survives-shutdown") {
		t.Fatal("a held event was sent")
	}

	restarted := provisioned(t, path, withSink(sinkPath))
	if err := restarted.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { restarted.Stop(); restarted.Cleanup() }()
	waitSink(t, sinkPath, platform.Meta, "survives-shutdown")
}

func TestSendersFromConfig(t *testing.T) {
	r := &resolvedConfig{
		meta:   &MetaConfig{PixelID: "1234567890", AccessToken: "t", TestEventCode: "TEST1"},
		google: &GoogleAdsConfig{TagID: "AW-123456789", Conversions: []GoogleConversion{{Event: "Purchase", ActionID: "1", Label: "abc"}}},
		delivery: DeliveryConfig{Workers: 2, Batch: 50, Flush: caddy.Duration(time.Second),
			GiveUp: caddy.Duration(48 * time.Hour)},
	}
	senders, err := r.newSenders(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(senders) != 1 || senders[platform.Meta] == nil {
		t.Fatalf("senders = %v; want Meta only (a Google tag without customer_id is browser-only)", senders)
	}
	s := r.deliverySettings(senders)
	if s.Workers != 2 || s.Batch != 50 || s.Flush != time.Second || s.GiveUp[platform.Meta] != 48*time.Hour {
		t.Errorf("settings = %+v", s)
	}
	if codes := r.testEventCodes(); len(codes) != 1 || codes[platform.Meta] != "TEST1" {
		t.Errorf("test event codes = %v", codes)
	}

	r.sink = &SinkConfig{Type: "file", Path: "/dev/null"}
	r.meta.AccessToken = ""
	if _, err := r.newSenders(nil); err != nil {
		t.Errorf("a sink config without tokens: %v", err)
	}
}

// TestDeliveryFeedsMetrics: the engine's observations reach the Prometheus collectors, and an
// event is counted as enqueued once, though its Enqueue goes through the engine.
func TestDeliveryFeedsMetrics(t *testing.T) {
	dir := t.TempDir()
	sinkPath := filepath.Join(dir, "events.jsonl")
	a := provisioned(t, filepath.Join(dir, "capi.db"), withSink(sinkPath))
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { a.Stop(); a.Cleanup() }()
	enqueued := value(t, metrics.enqueued.WithLabelValues(platform.TikTok))
	delivered := value(t, metrics.delivered.WithLabelValues(platform.TikTok))

	if _, err := a.storage.enqueueEdge(context.Background(), []string{platform.TikTok}, testEvent("metered")); err != nil {
		t.Fatal(err)
	}
	waitSink(t, sinkPath, platform.TikTok, "metered")
	deadline := time.Now().Add(5 * time.Second)
	for value(t, metrics.delivered.WithLabelValues(platform.TikTok)) != delivered+1 {
		if time.Now().After(deadline) {
			t.Fatal("the delivery was not counted")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := value(t, metrics.enqueued.WithLabelValues(platform.TikTok)); got != enqueued+1 {
		t.Errorf("enqueued counted %v times, want once", got-enqueued)
	}
}

// TestShutdownDrainIsBounded: a platform that never answers holds up the last cleanup for at most
// the drain deadline, and the event whose send was cut short stays queued for the next start.
func TestShutdownDrainIsBounded(t *testing.T) {
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case arrived <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer hung.Close()
	defer close(release)

	dir := t.TempDir()
	path, sinkPath := filepath.Join(dir, "capi.db"), filepath.Join(dir, "events.jsonl")
	a := provisioned(t, path, func(a *App) {
		a.Meta = &MetaConfig{PixelID: "1234567890", AccessToken: "t", Endpoint: hung.URL}
		a.Delivery = &DeliveryConfig{Flush: caddy.Duration(10 * time.Millisecond)}
	})
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.storage.enqueueEdge(context.Background(), []string{platform.Meta}, testEvent("cut-short")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the event was never sent")
	}
	withDeadline(t, func() {
		a.Stop()
		if err := a.Cleanup(); err == nil || !strings.Contains(err.Error(), "draining delivery") {
			t.Errorf("cleanup = %v; want the drain's deadline reported", err)
		}
	})

	restarted := provisioned(t, path, withSink(sinkPath))
	if err := restarted.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { restarted.Stop(); restarted.Cleanup() }()
	waitSink(t, sinkPath, platform.Meta, "cut-short")
}
