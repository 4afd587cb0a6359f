"use client";
import { useEffect, useRef, useState, type ReactNode } from "react";

/**
 * A button for something that cannot be undone: the first click asks, in place, "Really …?
 * Yes / No"; only Yes acts. The question is announced (role="alert") and No takes the focus,
 * so Enter twice never confirms by accident; Escape or No goes back to the button.
 */
export function ConfirmButton(props: {
  children: ReactNode;
  /** The question, e.g. "Really cancel this job?" */
  question: string;
  onConfirm: () => void;
  yes?: string;
  no?: string;
  className?: string;
  disabled?: boolean;
}) {
  const [asking, setAsking] = useState(false);
  const noRef = useRef<HTMLButtonElement>(null);
  const buttonRef = useRef<HTMLButtonElement>(null);
  const answered = useRef(false);
  useEffect(() => {
    if (asking) noRef.current?.focus();
    else if (answered.current) buttonRef.current?.focus();
  }, [asking]);
  const close = () => {
    answered.current = true;
    setAsking(false);
  };

  if (!asking) {
    return (
      <button type="button" ref={buttonRef} className={props.className} disabled={props.disabled} onClick={() => setAsking(true)}>
        {props.children}
      </button>
    );
  }
  return (
    <span className="confirm" role="group" aria-label={props.question} onKeyDown={(e) => e.key === "Escape" && close()}>
      <span role="alert">{props.question}</span>
      <button type="button" className="danger" disabled={props.disabled} onClick={() => (setAsking(false), props.onConfirm())}>
        {props.yes ?? "Yes"}
      </button>
      <button type="button" ref={noRef} onClick={close}>{props.no ?? "No"}</button>
    </span>
  );
}
