"use client";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useTRPC } from "../../_components/trpc";
import { ConfirmButton } from "../../_components/ConfirmButton";
import { bytes, when } from "../../_components/format";

/** The programs and data files the user uploaded, what they take of the storage quota, and deleting them. */
export function FilesCard() {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const list = useQuery(trpc.files.list.queryOptions());
  const refresh = () => queryClient.invalidateQueries({ queryKey: trpc.files.list.queryKey() });
  const removeData = useMutation(trpc.files.deleteData.mutationOptions({ onSettled: refresh }));
  const removeProgram = useMutation(trpc.files.deleteProgram.mutationOptions({ onSettled: refresh }));
  const error = removeData.error ?? removeProgram.error;
  const l = list.data;
  const share = l?.quotaBytes ? Math.min(1, l.usedBytes / l.quotaBytes) : 0;

  return (
    <section className="card stack" aria-label="Your files">
      <h2>Your files</h2>
      {l && (
        <>
          <p className="hint" data-testid="storage-use">
            {bytes(l.usedBytes)} used{l.quotaBytes ? ` of ${bytes(l.quotaBytes)}` : " (no quota)"}
            {l.inputBytes > 0 && `; your jobs' inputs take ${bytes(l.inputBytes)}${l.quotaBytes ? ` of another ${bytes(l.quotaBytes)}` : ""} until they are removed`}
            {l.outputBytes > 0 && `; your ended jobs' outputs take ${bytes(l.outputBytes)}${l.quotaBytes ? ` of a third ${bytes(l.quotaBytes)}` : ""} until you delete them (on their pages)`}
          </p>
          {l.quotaBytes !== null && (
            <div className="progress" role="meter" aria-label="storage used" aria-valuemin={0} aria-valuemax={l.quotaBytes} aria-valuenow={l.usedBytes}>
              <div style={{ width: `${(share * 100).toFixed(1)}%` }} />
            </div>
          )}
          {l.files.length === 0 ? (
            <p className="hint">No programs or data files yet: upload them under &ldquo;Run your own program&rdquo;.</p>
          ) : (
            <table>
              <thead><tr><th>Name</th><th>Type</th><th>Size</th><th>Uploaded</th><th /></tr></thead>
              <tbody>
                {l.files.map((f) => (
                  <tr key={`${f.type}-${f.hash}`} data-testid="file-row">
                    <td title={f.hash}>{f.name}</td>
                    <td>{f.type === "program" ? `program (${f.kind})` : "data"}</td>
                    <td style={{ whiteSpace: "nowrap" }}>{bytes(f.size)}</td>
                    <td>{when(f.createdAt)}</td>
                    <td>
                      <ConfirmButton
                        className="link" question={`Really delete ${f.name}?`} yes="Delete"
                        disabled={removeData.isPending || removeProgram.isPending}
                        onConfirm={() => (f.type === "data" ? removeData : removeProgram).mutate({ hash: f.hash })}
                      >
                        Delete
                      </ConfirmButton>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </>
      )}
      {list.error && <p className="error">{list.error.message}</p>}
      {error && <p className="error" role="alert">{error.message}</p>}
    </section>
  );
}
