;; bytesum: the sum and count of a block of bytes, following Tabgrid's WASM ABI
;; (docs/writing-jobs.md): exported memory with a maximum, alloc, run, result_len, reduce.
;; Submit it with byte blocks:  npx tabgrid submit --program examples/wasm/bytesum.wasm \
;;   --blocks some.bin --block-size 65536 --merge reduce --wait
;; Output of run and of reduce: 16 bytes, the u64 sum then the u64 count (little-endian).
(module
  ;; 2 pages to start, at most 64 (4 MiB): the runtime refuses modules without a maximum.
  (memory (export "memory") 2 64)

  ;; Bytes 0..15 hold the output; the heap for inputs starts at 1024 and is reset by each
  ;; run, so a module instance can be reused for many tasks.
  (global $heap (mut i32) (i32.const 1024))
  (global $len (mut i32) (i32.const 0))

  (func $alloc (export "alloc") (param $n i32) (result i32)
    (local $p i32)
    (local $pages i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    ;; Grow to fit; past the maximum memory.grow returns -1 and the caller's writes trap.
    (local.set $pages (i32.add (i32.shr_u (global.get $heap) (i32.const 16)) (i32.const 1)))
    (if (i32.gt_u (local.get $pages) (memory.size))
      (then (drop (memory.grow (i32.sub (local.get $pages) (memory.size))))))
    (local.get $p))

  (func (export "result_len") (result i32) (global.get $len))

  (func $output (param $sum i64) (param $count i64) (result i32)
    (i64.store (i32.const 0) (local.get $sum))
    (i64.store (i32.const 8) (local.get $count))
    (global.set $len (i32.const 16))
    (global.set $heap (i32.const 1024))
    (i32.const 0))

  ;; run: sum of the input's bytes, and their count.
  (func (export "run") (param $ptr i32) (param $n i32) (result i32)
    (local $i i32)
    (local $sum i64)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $sum (i64.add (local.get $sum) (i64.load8_u (i32.add (local.get $ptr) (local.get $i)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (call $output (local.get $sum) (i64.extend_i32_u (local.get $n))))

  ;; reduce: the outputs framed as [u32 length][bytes]..., each 16 bytes: add them up.
  (func (export "reduce") (param $ptr i32) (param $n i32) (result i32)
    (local $p i32)
    (local $end i32)
    (local $len i32)
    (local $sum i64)
    (local $count i64)
    (local.set $p (local.get $ptr))
    (local.set $end (i32.add (local.get $ptr) (local.get $n)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
        (local.set $len (i32.load (local.get $p)))
        (if (i32.ne (local.get $len) (i32.const 16)) (then unreachable))
        (local.set $sum (i64.add (local.get $sum) (i64.load offset=4 (local.get $p))))
        (local.set $count (i64.add (local.get $count) (i64.load offset=12 (local.get $p))))
        (local.set $p (i32.add (local.get $p) (i32.const 20)))
        (br $next)))
    (call $output (local.get $sum) (local.get $count)))
)
