package delivery_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-capi/caddy-capi/capi/delivery"
	"github.com/caddy-capi/caddy-capi/capi/event"
	"github.com/caddy-capi/caddy-capi/capi/platform"
)

const crashDirEnv = "CAPI_DELIVERY_CRASH_DIR"

// TestKill9RedeliversEveryAcknowledgedEvent runs a child copy of this test binary that enqueues
// events while the platform is down, starts delivering them once it is back, and is SIGKILLed in
// the middle. Reopening the same file must deliver every event the child had acknowledged.
func TestKill9RedeliversEveryAcknowledgedEvent(t *testing.T) {
	if dir := os.Getenv(crashDirEnv); dir != "" {
		crashChild(t, dir)
		return
	}
	const total = 800
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKill9RedeliversEveryAcknowledgedEvent$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	acked := false
	for sc := bufio.NewScanner(out); sc.Scan(); {
		if sc.Text() == fmt.Sprint("acknowledged ", total) {
			acked = true
			break
		}
	}
	if !acked {
		t.Fatal("the child did not acknowledge its events")
	}
	log := filepath.Join(dir, "delivered.log")
	eventually(t, "the child delivering", func() bool { return len(readLines(log)) >= 100 })
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	before := readLines(log)
	if len(before) >= total {
		t.Fatalf("the child delivered all %d events before the kill: nothing was tested", len(before))
	}

	q, db := openQueue(t, dir)
	defer db.Close()
	defer q.Close()
	e := delivery.New(q, delivery.Options{Poll: 10 * time.Millisecond})
	defer e.Close(context.Background())
	f := newFake(platform.Meta)
	e.SetSenders(map[string]platform.Sender{platform.Meta: f}, delivery.Settings{Batch: 50, Flush: time.Millisecond})
	eventually(t, "the queue drained after restart", func() bool { return platformStats(t, e, platform.Meta).Depth == 0 })

	got := map[string]bool{}
	for _, id := range before {
		got[id] = true
	}
	redelivered := 0
	for _, s := range f.sendLog() {
		for _, id := range s {
			if got[id] {
				redelivered++ // delivered but killed before the ack was durable: at-least-once
			}
			got[id] = true
		}
	}
	for i := range total {
		if id := crashID(i); !got[id] {
			t.Errorf("acknowledged event %s was never delivered", id)
		}
	}
	t.Logf("child delivered %d before kill -9; %d after restart, %d of them again", len(before), f.distinctDelivered(), redelivered)
}

func crashID(i int) string { return fmt.Sprintf("crash-%04d", i) }

func readLines(path string) []string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(string(b), "\n")
	return lines[:len(lines)-1] // the last is empty, or a line cut by the kill
}

// crashChild enqueues while the platform answers 503, then delivers slowly, logging each event the
// platform accepted before its ack, until the parent kills it.
func crashChild(t *testing.T, dir string) {
	q, _ := openQueue(t, dir)
	log, err := os.OpenFile(filepath.Join(dir, "delivered.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	down := true
	var mu sync.Mutex
	f := newFake(platform.Meta)
	f.sleep = 5 * time.Millisecond
	f.setAnswer(func(evs []event.Event) platform.Result {
		mu.Lock()
		defer mu.Unlock()
		if down {
			return platform.Result{Outcome: platform.Retry, Reason: "503 Service Unavailable"}
		}
		var b strings.Builder
		for _, ev := range evs {
			b.WriteString(ev.ID + "\n")
		}
		log.WriteString(b.String())
		return platform.Result{Outcome: platform.Delivered}
	})
	e := delivery.New(q, delivery.Options{Poll: 10 * time.Millisecond, BackoffBase: 10 * time.Millisecond, BackoffCap: 50 * time.Millisecond})
	e.SetSenders(map[string]platform.Sender{platform.Meta: f}, delivery.Settings{Workers: 2, Batch: 10, Flush: time.Millisecond})
	var wg sync.WaitGroup
	for p := range 16 {
		wg.Go(func() {
			for i := p; i < 800; i += 16 {
				ev := events("x", 1)[0]
				ev.ID = crashID(i)
				if _, err := e.Enqueue(context.Background(), platform.Meta, ev); err != nil {
					panic(err)
				}
			}
		})
	}
	wg.Wait()
	fmt.Println("acknowledged", 800)
	time.Sleep(100 * time.Millisecond)
	mu.Lock()
	down = false
	mu.Unlock()
	time.Sleep(time.Minute) // the parent kills us long before
	os.Exit(3)
}
