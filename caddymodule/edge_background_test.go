package caddymodule

import (
	"context"
	"sync/atomic"
	"testing"
)

func TestBackgroundWriterCountsDropsAndDrainsOnDestruct(t *testing.T) {
	w := newBackgroundWriter()
	dropped := edgeStats().backgroundDropped.WithLabelValues("test-drop")
	before := counterValue(t, dropped)

	release := make(chan struct{})
	started := make(chan struct{})
	var ran atomic.Int64
	if !w.submit("test-drop", func(context.Context) error { close(started); <-release; ran.Add(1); return nil }) {
		t.Fatal("the first job was refused")
	}
	<-started
	for i := range backgroundQueueSize {
		if !w.submit("test-drop", func(context.Context) error { ran.Add(1); return nil }) {
			t.Fatalf("job %d refused before the queue was full", i)
		}
	}
	if w.submit("test-drop", func(context.Context) error { ran.Add(1); return nil }) {
		t.Fatal("a job was taken beyond the queue's bound")
	}
	if got := counterValue(t, dropped) - before; got != 1 {
		t.Fatalf("dropped jobs counted %v, want 1", got)
	}

	close(release)
	if err := w.Destruct(); err != nil {
		t.Fatal(err)
	}
	if got := ran.Load(); got != backgroundQueueSize+1 {
		t.Fatalf("%d jobs ran; Destruct must finish the %d that were waiting", got, backgroundQueueSize+1)
	}
	if w.submit("test-drop", func(context.Context) error { return nil }) {
		t.Fatal("a stopped writer took a job")
	}
	if got := counterValue(t, dropped) - before; got != 2 {
		t.Fatalf("a job refused after Destruct was not counted: %v", got)
	}
}
