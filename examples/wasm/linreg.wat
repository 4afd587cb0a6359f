;; linreg: linear regression trained by data-parallel gradient descent, in WebAssembly: the
;; WASM form of an iterative program (docs/writing-jobs.md, "Iterative programs").
;;   npx tabgrid submit --program examples/wasm/linreg.wasm --input-csv points.csv --chunks 8 \
;;     --merge mean --replicas 1 --rounds 40 --wait --json
;; The CSV's last column is the target y, the others the features x. Each round, every unit
;; gets the weights and returns its shard's mean gradient of half the squared error, then its
;; mean squared error, as f64s; the mean merge averages them and step takes one step of
;; LEARNING_RATE. The job's result is the last state: the weights, then the bias, as f64s.
;; Only +, -, * and / on doubles, in a fixed order: every engine computes the same bits.
;;
;; run's input:  [u32 round][u32 columns][u32 n][n bytes: the weights][the shard: rows of f64]
;; step's input: [u32 round][u32 shards][u32 columns][u32 arrived][u32 n][n bytes: state][merged f64s]
;; step's output: [u32 0][u32 n][next][u32 n][state][u32 metrics]([u32 n][name][f64])...
(module
  ;; A shard of 10,000 rows of 21 columns is 1.7 MB: up to 64 MiB, growing as needed.
  (memory (export "memory") 2 1024)
  (global $heap (mut i32) (i32.const 1024))
  (global $len (mut i32) (i32.const 0))
  (global $rate f64 (f64.const 0.5))

  ;; A bump allocator: a fresh instance runs every unit and every step.
  (func $alloc (export "alloc") (param $n i32) (result i32)
    (local $p i32)
    (local $pages i32)
    (local.set $p (global.get $heap))
    ;; 8-byte aligned, so that every f64 is too.
    (global.set $heap (i32.and (i32.add (i32.add (global.get $heap) (local.get $n)) (i32.const 7)) (i32.const -8)))
    (local.set $pages (i32.add (i32.shr_u (global.get $heap) (i32.const 16)) (i32.const 1)))
    (if (i32.gt_u (local.get $pages) (memory.size))
      (then (drop (memory.grow (i32.sub (local.get $pages) (memory.size))))))
    (local.get $p))

  (func (export "result_len") (result i32) (global.get $len))

  ;; The f64 at index $i of the array at $base.
  (func $at (param $base i32) (param $i i32) (result i32)
    (i32.add (local.get $base) (i32.shl (local.get $i) (i32.const 3))))

  (func (export "run") (param $ptr i32) (param $n i32) (result i32)
    (local $cols i32) (local $d i32) (local $w i32) (local $x i32) (local $rows i32)
    (local $out i32) (local $r i32) (local $j i32) (local $row i32)
    (local $pred f64) (local $err f64) (local $loss f64)
    (local.set $cols (i32.load offset=4 (local.get $ptr)))
    (local.set $d (i32.sub (local.get $cols) (i32.const 1)))
    (local.set $w (i32.add (local.get $ptr) (i32.const 12)))
    (local.set $x (i32.add (local.get $w) (i32.load offset=8 (local.get $ptr))))
    (local.set $rows (i32.div_u (i32.sub (i32.add (local.get $ptr) (local.get $n)) (local.get $x))
                                (i32.shl (local.get $cols) (i32.const 3))))
    ;; The gradient (d weights, then the bias), then the mean squared error: zeroed memory.
    (local.set $out (call $alloc (i32.shl (i32.add (local.get $cols) (i32.const 1)) (i32.const 3))))
    (block $rows_done
      (loop $each_row
        (br_if $rows_done (i32.ge_u (local.get $r) (local.get $rows)))
        (local.set $row (call $at (local.get $x) (i32.mul (local.get $r) (local.get $cols))))
        (local.set $pred (f64.load (call $at (local.get $w) (local.get $d))))
        (local.set $j (i32.const 0))
        (block $dot_done
          (loop $dot
            (br_if $dot_done (i32.ge_u (local.get $j) (local.get $d)))
            (local.set $pred (f64.add (local.get $pred)
              (f64.mul (f64.load (call $at (local.get $w) (local.get $j))) (f64.load (call $at (local.get $row) (local.get $j))))))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br $dot)))
        (local.set $err (f64.sub (local.get $pred) (f64.load (call $at (local.get $row) (local.get $d)))))
        (local.set $j (i32.const 0))
        (block $grad_done
          (loop $grad
            (br_if $grad_done (i32.ge_u (local.get $j) (local.get $d)))
            (f64.store (call $at (local.get $out) (local.get $j))
              (f64.add (f64.load (call $at (local.get $out) (local.get $j)))
                       (f64.mul (local.get $err) (f64.load (call $at (local.get $row) (local.get $j))))))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br $grad)))
        (f64.store (call $at (local.get $out) (local.get $d))
          (f64.add (f64.load (call $at (local.get $out) (local.get $d))) (local.get $err)))
        (local.set $loss (f64.add (local.get $loss) (f64.mul (local.get $err) (local.get $err))))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $each_row)))
    (f64.store (call $at (local.get $out) (local.get $cols)) (local.get $loss))
    ;; Means over the shard's rows.
    (local.set $j (i32.const 0))
    (block $mean_done
      (loop $mean
        (br_if $mean_done (i32.gt_u (local.get $j) (local.get $cols)))
        (f64.store (call $at (local.get $out) (local.get $j))
          (f64.div (f64.load (call $at (local.get $out) (local.get $j))) (f64.convert_i32_u (local.get $rows))))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        (br $mean)))
    (global.set $len (i32.shl (i32.add (local.get $cols) (i32.const 1)) (i32.const 3)))
    (local.get $out))

  (func (export "step") (param $ptr i32) (param $n i32) (result i32)
    (local $round i32) (local $cols i32) (local $bytes i32) (local $state i32) (local $merged i32)
    (local $out i32) (local $next i32) (local $j i32) (local $p i32)
    (local.set $round (i32.load (local.get $ptr)))
    (local.set $cols (i32.load offset=8 (local.get $ptr)))
    (local.set $bytes (i32.shl (local.get $cols) (i32.const 3)))
    (local.set $state (i32.add (local.get $ptr) (i32.const 20)))
    (local.set $merged (i32.add (local.get $state) (i32.load offset=16 (local.get $ptr))))
    ;; [0][n][next][n][state][1]["mse"][f64]: the next weights serve as both.
    (local.set $out (call $alloc (i32.add (i32.shl (local.get $bytes) (i32.const 1)) (i32.const 31))))
    (i32.store (local.get $out) (i32.const 0))
    (i32.store offset=4 (local.get $out) (local.get $bytes))
    (local.set $next (i32.add (local.get $out) (i32.const 8)))
    ;; The state's copy of the weights, after its length.
    (local.set $p (i32.add (local.get $next) (local.get $bytes)))
    (i32.store (local.get $p) (local.get $bytes))
    (local.set $p (i32.add (local.get $p) (i32.const 4)))
    ;; Round 0: zero weights (the memory is). After a round: w - rate * gradient.
    (if (i32.ne (local.get $round) (i32.const 0))
      (then
        (block $done
          (loop $each
            (br_if $done (i32.ge_u (local.get $j) (local.get $cols)))
            (f64.store (call $at (local.get $next) (local.get $j))
              (f64.sub (f64.load (call $at (local.get $state) (local.get $j)))
                       (f64.mul (global.get $rate) (f64.load (call $at (local.get $merged) (local.get $j))))))
            (f64.store (call $at (local.get $p) (local.get $j)) (f64.load (call $at (local.get $next) (local.get $j))))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br $each)))))
    (local.set $p (i32.add (local.get $p) (local.get $bytes)))
    (if (i32.eqz (local.get $round))
      (then
        (i32.store (local.get $p) (i32.const 0))
        (global.set $len (i32.sub (i32.add (local.get $p) (i32.const 4)) (local.get $out))))
      (else
        (i32.store (local.get $p) (i32.const 1))
        (i32.store offset=4 (local.get $p) (i32.const 3))
        ;; "mse"
        (i32.store8 offset=8 (local.get $p) (i32.const 109))
        (i32.store8 offset=9 (local.get $p) (i32.const 115))
        (i32.store8 offset=10 (local.get $p) (i32.const 101))
        (f64.store offset=11 (local.get $p) (f64.load (call $at (local.get $merged) (local.get $cols))))
        (global.set $len (i32.sub (i32.add (local.get $p) (i32.const 19)) (local.get $out)))))
    (local.get $out)))
