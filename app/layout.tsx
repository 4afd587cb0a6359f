import type { Metadata } from "next";
import type { ReactNode } from "react";
import { Providers } from "./_components/Providers";
import { Nav } from "./_components/Nav";
import "./globals.css";

export const metadata: Metadata = {
  title: "Tabgrid — volunteer computing in your browser",
  description: "Browser tabs as a compute cluster: submit jobs, volunteer your CPU, earn credits.",
};

export default function RootLayout({ children }: { children: ReactNode }) {
  return (
    <html lang="en">
      <body>
        <Providers>
          <Nav />
          <main>{children}</main>
        </Providers>
      </body>
    </html>
  );
}
