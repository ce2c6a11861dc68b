// A JVM program under the tools: threads, files, a child process; prints
// only what is the same on every run.
import java.nio.file.*;
import java.util.*;
import java.util.concurrent.*;

public class Threads {
    public static void main(String[] args) throws Exception {
        Path dir = Files.createTempDirectory("sud-jvm");
        ExecutorService pool = Executors.newFixedThreadPool(8);
        List<Future<Integer>> results = new ArrayList<>();
        for (int t = 0; t < 16; t++) {
            final int id = t;
            results.add(pool.submit(() -> {
                Path file = dir.resolve("f" + id);
                int sum = 0;
                for (int i = 0; i < 50; i++) {
                    Files.writeString(file, "line " + i + "\n");
                    sum += Files.readString(file).length();
                }
                Files.delete(file);
                return sum;
            }));
        }
        long total = 0;
        for (Future<Integer> f : results) total += f.get();
        pool.shutdown();
        Process child = new ProcessBuilder("/bin/echo", "from child").start();
        String line = new String(child.getInputStream().readAllBytes()).trim();
        int code = child.waitFor();
        Files.delete(dir);
        System.out.println("total=" + total + " child=" + line + " code=" + code);
    }
}
